"""Where Ray and MLflow live: the victim actor's client, trials, the sweep driver, Optuna studies and tracking."""
