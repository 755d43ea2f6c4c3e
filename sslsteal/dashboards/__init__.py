"""Dashboards: the paper's tables and figures rebuilt from MLflow runs as a static site (tables in HTML, plots as
inline SVG), ours beside the paper's values, seeds aggregated as mean and 95% t-interval.

Pure: nothing here imports MLflow, Ray or torch; `sslsteal.orchestration.run_records` turns runs and Optuna
studies into the plain records these modules consume.
"""
