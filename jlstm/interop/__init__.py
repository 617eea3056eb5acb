"""Exact weight import and export between jlstm and other LSTM layouts.

Each format has a ``from_X`` that returns jlstm parameters and a ``to_X``
that returns the other layout, such that ``from_X(to_X(p))`` is ``p`` (up
to one rounding of the forget bias where the format adds a constant to the
forget gate at run time: Haiku and TF1). States convert with
``from_X_state`` / ``to_X_state`` (Flax: ``from_flax_carry`` /
``to_flax_carry``), which put ``h`` and ``c`` in each format's order.

Formats: PyTorch ``nn.LSTM`` / ``nn.LSTMCell`` (:mod:`.torch`), Keras 3
``LSTM`` (:mod:`.keras`), Flax linen and NNX LSTM cells (:mod:`.flax`),
Haiku ``hk.LSTM`` (:mod:`.haiku`), TF1 ``BasicLSTMCell`` / ``LSTMCell``
(:mod:`.tf1`) and the TF1 notebook's twelve variables (:mod:`.seed`).
Converting imports none of these frameworks, except ``to_torch`` building
torch tensors (``as_numpy=True`` avoids it) and ``to_haiku_state``
building Haiku's state type.
"""

from jlstm.interop.flax import FLAX_LAYOUTS
from jlstm.interop.flax import from_flax
from jlstm.interop.flax import from_flax_carry
from jlstm.interop.flax import to_flax
from jlstm.interop.flax import to_flax_carry
from jlstm.interop.haiku import HAIKU_GATE_ORDER
from jlstm.interop.haiku import from_haiku
from jlstm.interop.haiku import from_haiku_state
from jlstm.interop.haiku import to_haiku
from jlstm.interop.haiku import to_haiku_state
from jlstm.interop.keras import from_keras
from jlstm.interop.keras import from_keras_state
from jlstm.interop.keras import to_keras
from jlstm.interop.keras import to_keras_state
from jlstm.interop.seed import SEED_GATES
from jlstm.interop.seed import from_seed
from jlstm.interop.seed import to_seed
from jlstm.interop.tf1 import TF1_GATE_ORDER
from jlstm.interop.tf1 import from_tf1
from jlstm.interop.tf1 import from_tf1_state
from jlstm.interop.tf1 import to_tf1
from jlstm.interop.tf1 import to_tf1_state
from jlstm.interop.torch import from_torch
from jlstm.interop.torch import from_torch_state
from jlstm.interop.torch import to_torch
from jlstm.interop.torch import to_torch_state

__all__ = [
  'FLAX_LAYOUTS',
  'HAIKU_GATE_ORDER',
  'SEED_GATES',
  'TF1_GATE_ORDER',
  'from_flax',
  'from_flax_carry',
  'from_haiku',
  'from_haiku_state',
  'from_keras',
  'from_keras_state',
  'from_seed',
  'from_tf1',
  'from_tf1_state',
  'from_torch',
  'from_torch_state',
  'to_flax',
  'to_flax_carry',
  'to_haiku',
  'to_haiku_state',
  'to_keras',
  'to_keras_state',
  'to_seed',
  'to_tf1',
  'to_tf1_state',
  'to_torch',
  'to_torch_state',
]
