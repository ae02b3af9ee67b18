"""Defocus-blur methods under one protocol (:class:`methods.base.Method`), created by name."""
from .base import Method, to_gray
from .registry import create_method, get_method, list_methods, register_method

__all__ = ["Method", "create_method", "get_method", "list_methods", "register_method", "to_gray"]
