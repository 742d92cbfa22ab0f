"""Competing methods, one small module each, registered by name into tropd's method registry.

Importing this package imports every module in this folder, which registers them all (tropd.catalog
imports the package): a new method is one new module here and one preset YAML in configs/methods/
(README.md here walks through it). Each module opens with its math: paper, equation, and every
deviation. README.md tabulates method -> paper -> equation -> preset -> status.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
