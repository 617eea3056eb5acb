"""Flax modules that wrap jlstm's functional core.

* :mod:`jlstm.adapters.linen`: ``LSTM`` (a drop-in for
  ``nn.RNN(nn.OptimizedLSTMCell(features))``) and ``StackedLSTM`` (PyTorch
  ``nn.LSTM`` semantics) as ``flax.linen`` modules.
* :mod:`jlstm.adapters.nnx`: the same two as ``flax.nnx`` modules (``LSTM``
  a drop-in for ``nnx.RNN(nnx.OptimizedLSTMCell(...))``).

Import the submodule you need; ``import jlstm`` does not import Flax.
"""
