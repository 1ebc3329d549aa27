"""The swap extension's C++/CUDA sources, installed with the package as data
(``autellix build-ext`` compiles them where the package is installed)."""
