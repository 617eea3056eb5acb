"""The dtype policy: parameter, compute and state dtypes, matmul precision."""

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import reference

import jlstm
from jlstm.train import precision
from jlstm.train.config import ConfigError

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The four gate blocks of w_x, w_h and b, named as the float64 reference
#: names them.
REFERENCE_GATES = {'i': 'i', 'f': 'f', 'g': 'ci', 'o': 'o'}


def _dot_dtypes(jaxpr) -> list[tuple[str, str, str]]:
  """(lhs, rhs, out) dtypes of every dot_general, nested jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      found.append(
        tuple(str(v.aval.dtype) for v in (*eqn.invars, eqn.outvars[0]))
      )
    for param in eqn.params.values():
      for sub in param if isinstance(param, list | tuple) else [param]:
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          found += _dot_dtypes(inner)
  return found


def _round_bf16(x) -> np.ndarray:
  """``x`` rounded to bfloat16, as float64."""
  return np.asarray(jnp.asarray(x, jnp.bfloat16).astype(jnp.float32), float)


def test_policy_default_computes_in_parameter_dtype():
  """Without compute_dtype every dtype is the parameters' own."""
  policy = precision.make_policy()
  assert policy.param_dtype == np.float32
  assert policy.compute_dtype == np.float32
  assert policy.state_dtype == np.float32
  assert not policy.is_mixed
  assert policy.matmul_precision == 'default'
  bf16 = precision.make_policy('bfloat16')
  assert bf16.compute_dtype == jnp.bfloat16
  assert bf16.state_dtype == np.float32


def test_policy_mixed_keeps_state_in_float32():
  """float32 params with bfloat16 compute: a float32 LSTM state."""
  policy = precision.make_policy('float32', 'bfloat16')
  assert policy.is_mixed
  assert policy.compute_dtype == jnp.bfloat16
  assert policy.state_dtype == np.float32
  assert policy.describe() == (
    'params float32, compute bfloat16, state float32, matmul precision default'
  )
  assert hash(policy) == hash(precision.make_policy('float32', 'bfloat16'))


def test_policy_from_config_names_the_bad_key():
  """A bad dtype or precision is a ConfigError naming its key."""
  config = ml_collections.ConfigDict(
    {'dtype': 'float32', 'compute_dtype': '', 'matmul_precision': 'default'}
  )
  assert precision.policy_from_config(config) == precision.make_policy()
  for key, value in (
    ('compute_dtype', 'float16'),
    ('compute_dtype', 'int8'),
    ('matmul_precision', 'ultra'),
    ('dtype', 'float64'),
  ):
    bad = ml_collections.ConfigDict(config.to_dict())
    bad[key] = value
    with pytest.raises(ConfigError, match=f'config key {key} must be'):
      precision.policy_from_config(bad)
  bare = ml_collections.ConfigDict({'dtype': 'bfloat16'})
  assert precision.policy_from_config(bare) == precision.make_policy('bfloat16')


def test_policy_cast_to_compute_casts_floats_only():
  """Floating leaves become bfloat16; ids and PRNG keys pass through."""
  policy = precision.make_policy('float32', 'bfloat16')
  tree = {
    'w': jnp.ones((2, 3)),
    'ids': jnp.arange(3),
    'key': jax.random.key(0),
  }
  cast = policy.cast_to_compute(tree)
  assert cast['w'].dtype == jnp.bfloat16
  assert cast['ids'].dtype == tree['ids'].dtype
  assert cast['key'] is tree['key']
  back = policy.cast_to_param(cast)
  assert back['w'].dtype == np.float32


def test_policy_gradients_come_back_in_parameter_dtype():
  """Through the cast, bfloat16 compute gives float32 gradients."""
  policy = precision.make_policy('float32', 'bfloat16')
  params = jlstm.init_params(jax.random.key(0), 3, 4)
  xs = jnp.ones((5, 2, 3))

  def loss(p):
    _, hs = jlstm.unroll(policy.cast_to_compute(p), xs)
    return jnp.sum(hs**2)

  grads = jax.grad(loss)(params)
  assert {g.dtype for g in jax.tree.leaves(grads)} == {np.dtype('float32')}
  dots = _dot_dtypes(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
  # The forward matmuls run in bfloat16 and accumulate in float32.
  assert ('bfloat16', 'bfloat16', 'float32') in dots
  assert not [d for d in dots if d[2] == 'bfloat16']


def test_policy_matmul_scope_sets_precision_of_traced_matmuls():
  """'highest' marks forward and backward matmuls; 'default' marks none."""

  def traced(policy):
    def f(a, b):
      with policy.matmul_scope():
        return jnp.sum(a @ b)

    ones = jnp.ones((2, 2))
    return str(jax.make_jaxpr(jax.grad(f))(ones, ones))

  highest = traced(precision.make_policy(matmul_precision='highest'))
  assert highest.count('Precision.HIGHEST') == 2 * 2
  assert 'Precision.' not in traced(precision.make_policy())


def test_policy_bf16_unroll_matches_float64_reference():
  """bf16 compute tracks a float64 LSTM on bf16-rounded weights and inputs.

  Tolerance: atol 2e-2 on h in [-1, 1]. The reference rounds weights and
  inputs as the cast does; what remains is h rounded to bfloat16 before
  each recurrent matmul (relative 2**-9) over 12 steps. The float32 policy
  stays within 1e-5 of the unrounded reference, so the bf16 gap shows the
  cast took effect.
  """
  rng = np.random.default_rng(0)
  time, batch, inputs, hidden = 12, 3, 5, 8
  params = jlstm.init_params(jax.random.key(1), inputs, hidden, scale=0.5)
  xs = rng.normal(size=(time, batch, inputs)).astype(np.float32)

  def reference_hs(round_to_bf16: bool) -> np.ndarray:
    fix = _round_bf16 if round_to_bf16 else (lambda a: np.asarray(a, float))
    variables = {}
    for gate, name in REFERENCE_GATES.items():
      block = jlstm.gate_slice(gate, hidden)
      variables[f'W_{name}_x'] = fix(params.w_x[:, block])
      variables[f'W_{name}_hprev'] = fix(params.w_h[:, block])
      variables[f'W_{name}_b'] = fix(params.b[block])
    zeros = np.zeros((batch, hidden))
    return reference.seed_unroll(variables, fix(xs), zeros, zeros)[2]

  def jlstm_hs(policy) -> np.ndarray:
    _, hs = jlstm.unroll(policy.cast_to_compute(params), jnp.asarray(xs))
    assert hs.dtype == policy.state_dtype
    return np.asarray(hs, float)

  mixed = jlstm_hs(precision.make_policy('float32', 'bfloat16'))
  np.testing.assert_allclose(mixed, reference_hs(True), atol=2e-2)
  full = jlstm_hs(precision.make_policy())
  np.testing.assert_allclose(full, reference_hs(False), atol=1e-5)
  assert np.max(np.abs(mixed - reference_hs(False))) > 1e-4


@pytest.mark.slow
def test_train_step_bf16_compute_keeps_float32_params(tmp_path):
  """A train step with bf16 compute: bf16 matmuls, float32 params and state.

  At initialisation the readout's logits are near zero, so the first loss
  is close to ln(V) (within 0.1 nats) whatever the compute dtype.
  """
  from jlstm import train
  from jlstm.train import optim
  from jlstm.train import sharding
  from jlstm.train import tasks

  corpus = tmp_path / 'corpus.txt'
  corpus.write_text('the cat sat on the mat.\n' * 200, encoding='utf-8')
  config = train.load_config_file(ROOT / 'configs' / 'charlm.py')
  config.data.path = str(corpus)
  config.batch_size, config.seq_len = 4, 8
  config.model.hidden_size, config.model.embed_size = 16, 8
  config.compute_dtype = 'bfloat16'
  policy = precision.policy_from_config(config)

  task = tasks.build_task(config)
  mesh = sharding.make_mesh()
  schedule = optim.make_schedule(config, task.train_stream.steps_per_epoch)
  optimizer = optim.make_optimizer(config, schedule)
  state = train.create_train_state(
    task, optimizer, config.seed, config.batch_size, mesh
  )
  step = train.make_train_step(task, optimizer, schedule, policy=policy)
  batch = sharding.place_batch(next(task.train_stream), mesh)

  dots = _dot_dtypes(jax.make_jaxpr(step)(state, batch).jaxpr)
  bf16_dots = [d for d in dots if d[:2] == ('bfloat16', 'bfloat16')]
  # Input and recurrent matmul of each layer, and the readout.
  assert len(bf16_dots) >= 2 * config.model.num_layers + 1
  assert all(d[2] == 'float32' for d in bf16_dots)
  state, metrics = step(state, batch)
  leaves = jax.tree.leaves((state.params, state.carry))
  assert {x.dtype for x in leaves} == {np.dtype('float32')}
  vocab = task.tokenizer.vocab_size
  assert abs(float(metrics['loss']) - np.log(vocab)) < 0.1
