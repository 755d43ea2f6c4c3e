"""sslsteal: measure how easily self-supervised encoders served over an API can be stolen.

Importing the package is cheap: submodules (torch, Ray, MLflow) load only when used.
"""

__version__ = "0.1.0"
