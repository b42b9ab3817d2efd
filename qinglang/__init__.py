"""Qinglang 清朗: settings, wiring and the command line."""

__version__ = "0.1.0"
