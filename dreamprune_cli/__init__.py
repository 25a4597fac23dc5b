"""dreamprune: data-free compression of image-restoration networks."""

__version__ = "0.1.0"
