"""charrnn: character-level RNN/LSTM/GRU language models on the CPU, compiled with Numba."""

__version__ = "0.1.0"
