"""jlstm: exact, fast LSTMs as pure JAX functions.

Axis legend: B batch, T time, I input, H hidden, G = 4H gates.
"""

from jlstm import interop
from jlstm.cell import GATE_ORDER
from jlstm.cell import INIT_SCHEMES
from jlstm.cell import LayerNormParams
from jlstm.cell import LSTMParams
from jlstm.cell import LSTMState
from jlstm.cell import dropout_mask
from jlstm.cell import gate_slice
from jlstm.cell import init_params
from jlstm.cell import is_basic
from jlstm.cell import lstm_cell
from jlstm.cell import state_dtype
from jlstm.cell import zero_state
from jlstm.cell import zoneout
from jlstm.layers import init_stack
from jlstm.layers import unroll_stack
from jlstm.layers import zero_stack_state
from jlstm.unroll import unroll

__version__ = '0.1.0'

__all__ = [
  'GATE_ORDER',
  'INIT_SCHEMES',
  'LSTMParams',
  'LSTMState',
  'LayerNormParams',
  '__version__',
  'dropout_mask',
  'gate_slice',
  'init_params',
  'init_stack',
  'interop',
  'is_basic',
  'lstm_cell',
  'state_dtype',
  'unroll',
  'unroll_stack',
  'zero_stack_state',
  'zero_state',
  'zoneout',
]
