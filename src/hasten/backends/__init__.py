"""Other inference backends for the decode loop.

:mod:`hasten.backends.llamacpp`: GGUF models on llama.cpp kernels (optional
``llama-cpp-python``); imported on use so hasten never needs it.
"""
