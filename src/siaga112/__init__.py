"""siaga112: call handling for Indonesia's 112 emergency centres."""

__version__ = "0.1.0"
