"""Config-driven training: ``train_and_evaluate(config, workdir)``.

The CLI (``jlstm train | eval | sample``) and notebooks call the functions
here. Data flows one way: data -> model -> train step -> metrics and
checkpoints.
"""

from jlstm.train.checkpoint import Checkpointer
from jlstm.train.checkpoint import CheckpointError
from jlstm.train.config import ConfigError
from jlstm.train.config import apply_override
from jlstm.train.config import load_config_file
from jlstm.train.config import validate
from jlstm.train.faults import Diverged
from jlstm.train.loop import evaluate_workdir
from jlstm.train.loop import load_run
from jlstm.train.loop import sample_workdir
from jlstm.train.loop import train_and_evaluate
from jlstm.train.sampling import sample_text
from jlstm.train.sharding import make_mesh
from jlstm.train.sharding import place_batch
from jlstm.train.signals import Interrupted
from jlstm.train.state import TrainState
from jlstm.train.state import create_train_state
from jlstm.train.step import make_eval_step
from jlstm.train.step import make_train_step
from jlstm.train.tasks import build_task

__all__ = [
  'CheckpointError',
  'Checkpointer',
  'ConfigError',
  'Diverged',
  'Interrupted',
  'TrainState',
  'apply_override',
  'build_task',
  'create_train_state',
  'evaluate_workdir',
  'load_config_file',
  'load_run',
  'make_eval_step',
  'make_mesh',
  'make_train_step',
  'place_batch',
  'sample_text',
  'sample_workdir',
  'train_and_evaluate',
  'validate',
]
