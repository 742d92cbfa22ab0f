"""vLLM rollout backend (GPU): the same `sample` contract as tropd.rollout.hf, served by vLLM.

Only the translation lives here: token-id prompts in, `SamplingParams` per request (its own
max_tokens and seed, so a sample's random draws do not depend on the rest of the batch), and
vLLM's outputs back into (token ids, behaviour log-probs, finished). The behaviour policies
(student, guided, teacher, mixed) are in tropd.rollout and work unchanged on top of it.

Choices, and why:
- `logprobs_mode="processed_logprobs"` (vLLM >= 0.10.2): the log-prob returned for a sampled token
  is taken from the distribution it was drawn from (after temperature and top-p), like the HF
  backend's; vLLM's default returns the raw model log-probs, which are not the behaviour policy
  when temperature != 1.
- The student engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so a weight sync
  hands the trainer's tensors to the engine's model without serialising them
  (`LLM.apply_model(fn)` -> `model.load_weights(...)`), then resets the prefix cache, whose KV
  entries were computed with the old weights. The teacher engine never changes weights and runs in
  vLLM's default separate process (two engines cannot share one process's parallel state; and
  tropd.infra.vllm_engine.new_engine makes sure the student engine's cached env vars do not put it in
  this one).
- Besides the explicit `sync_weights` after every optimizer step, `sample("student")` pushes the
  weights whenever the module changed since the last push (parameter version counters): a resumed
  checkpoint or ERPD's reset of the student reaches the engine before the next rollout. With
  `vllm.sleep` the engine sleeps between rollouts (on every rank, with prompts or without) and that
  lazy push is the only one.
- Under `accelerate launch` (WORLD_SIZE > 1) every rank holds its own engine replica on its own GPU
  (`distributed_executor_backend="external_launcher"`) and samples its own share of the prompts.
  There the teacher's samples (guidance prefixes, SeqKD, GKD references) come from the HF teacher
  already on the GPU (tropd.rollout.hf), not from a second engine: vLLM's external launcher forces
  every engine into the calling process (it sets VLLM_ENABLE_V1_MULTIPROCESSING=0), and a second
  in-process engine fails, with sleep mode outright ("one instance per process", vLLM issue #18975).
- An engine whose model has more output rows than the pair shares (`vocab`, tropd.models.shared_vocab)
  samples with a logit bias of -1e4 on the extra rows (exp(-1e4) is 0 in float32), so it never
  writes a padding id the other model cannot score. vLLM adds the bias before it computes processed
  log-probs, so those stay the log-probs of the distribution sampled from, as the HF backend's cut
  logits are. A bias on the few extra rows (128 for paper-deepseek's teacher), not
  `allowed_token_ids` over the 151,936 shared ones: that list would travel with every request and
  be turned into a mask per request.
- A rollout whose prompt plus new tokens exceed `vllm.max_model_len` is refused: vLLM would end it
  at the cap unannounced, shorter than the HF backend's, and it would train as a truncated response.
- TRB's per-token teacher/student blend needs both models' logits at every decoding step inside
  one sampling loop; vLLM has no such hook, so `sample_blend` refuses with a one-line error.
- Every request carries its own seed. The in-process student engine schedules deterministically
  (vLLM's reproducibility notes), so a rerun of the same job on one vLLM version and GPU type
  repeats its samples; the teacher engine, in its own process, is not guaranteed to. Unlike the HF
  backend's, a sample can depend on the rest of the batch (bf16 logits vary with batching and can
  flip a near-tie), and samples are not bit-identical to the HF backend's (other kernels and
  random streams).
"""
from __future__ import annotations

import os
from typing import Any

from tropd.errors import UserError
from tropd.models import output_rows
from tropd.infra.vllm_engine import new_engine

# Where the in-process model object lived before `LLM.apply_model` existed (vLLM < 0.9).
_MODEL_PATHS = (
    ("llm_engine", "model_executor", "driver_worker", "worker", "model_runner", "model"),
    ("llm_engine", "model_executor", "driver_worker", "model_runner", "model"),
)
# Prefixes that wrappers (FSDP, activation checkpointing, DDP) add to parameter names.
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "module.")


def model_path(module, role: str) -> str:
    """The folder or hub id an in-memory HF model was loaded from (what vLLM must load)."""
    config = getattr(module, "config", None)
    path = getattr(module, "name_or_path", "") or getattr(config, "_name_or_path", "")
    if not path:
        raise UserError(f"vllm backend: the {role} model has no name_or_path; load it from a folder")
    return str(path)


# Added to the logits of rows past the shared vocabulary: exp(-1e4) underflows to 0 in float32.
PADDING_BIAS = -1e4


def sampling_params(vllm, max_new: int, seed: int, temperature: float, top_p: float, eos_ids: set[int],
                    banned: dict[int, float] | None = None):
    """One request's SamplingParams: its own length limit and seed; the sampled token's log-prob;
    `banned` rows (id -> PADDING_BIAS) never sampled."""
    extra = {"logit_bias": banned} if banned else {}
    return vllm.SamplingParams(
        n=1, temperature=temperature, top_p=top_p, max_tokens=max_new, seed=seed,
        logprobs=1,  # the sampled token's log-prob is always included (plus the top-1)
        # ignore_eos: stop at our EOS ids only, as the HF backend does, not also at those of the
        # model's generation config (Qwen3's lists two); vLLM still stops at stop_token_ids.
        stop_token_ids=sorted(eos_ids), ignore_eos=True, detokenize=False, skip_special_tokens=False, **extra,
    )


def parse_output(request_output, max_new: int, eos_ids: set[int]) -> tuple[list[int], list[float], bool]:
    """A vLLM RequestOutput -> (token ids, log-prob of each under the sampling policy, finished)."""
    comp = request_output.outputs[0]
    ids = [int(t) for t in comp.token_ids][:max_new]
    if comp.logprobs is None or len(comp.logprobs) < len(ids):
        raise RuntimeError("vllm returned no per-token logprobs; SamplingParams(logprobs=...) was ignored")
    lps = []
    for pos, (tok, entry) in enumerate(zip(ids, comp.logprobs)):
        if tok not in entry:
            raise RuntimeError(f"vllm logprobs at position {pos} lack the sampled token {tok}")
        lp = entry[tok]
        lps.append(float(getattr(lp, "logprob", lp)))
    return ids, lps, bool(ids and ids[-1] in eos_ids)


def named_weights(module):
    """(HF parameter name, full tensor) pairs; FSDP shards are gathered, wrapper prefixes dropped."""
    for name, p in module.state_dict().items():
        for prefix in _WRAPPER_PREFIXES:
            name = name.replace(prefix, "")
        if hasattr(p, "full_tensor"):  # FSDP2 / DTensor shard
            p = p.full_tensor()
        yield name, p.detach()


def fingerprint(module) -> tuple:
    """Changes whenever any parameter is modified in place (optimizer step, load_state_dict)."""
    return tuple((id(p), p._version) for p in module.parameters())


class VLLMBackend:
    """Student (and, on demand, teacher) rollouts through vLLM engines."""

    name = "vllm"

    def __init__(self, student, teacher, tok, eos_ids: set[int], pad_id: int, vocab: int | None = None,
                 **kw: Any):
        try:
            import vllm  # the `gpu` extra; never installed on CPU machines
        except ImportError:
            raise UserError("train.backend=vllm needs vLLM: pip install -e '.[gpu]' in a CUDA environment "
                            "(or use train.backend=hf)") from None
        self.vllm = vllm
        self.student, self.teacher, self.tok = student, teacher, tok
        self.eos_ids, self.pad_id, self.vocab = set(eos_ids), pad_id, vocab
        # Per role: the rows its output layer has past the shared vocabulary, biased out of sampling.
        self.banned = {role: {i: PADDING_BIAS for i in range(vocab, output_rows(m))} if vocab is not None
                       else {} for role, m in (("student", student), ("teacher", teacher))}
        self.kw = kw
        self.sleep = bool(kw.get("sleep", False))
        self.engines: dict[str, Any] = {}
        self.asleep: set[str] = set()
        self._pushed: tuple | None = None  # fingerprint of the student weights the engine holds
        self.syncs = 0
        self._engine("student")  # fail at start-up, not at the first rollout

    # ------------------------------------------------------------------ engines
    def _engine_args(self, role: str) -> dict:
        kw = self.kw
        module = self.student if role == "student" else self.teacher
        args = {
            "model": model_path(module, role),
            # Token ids in, token ids out: no tokenizer. "vllm" keeps the model's generation config
            # out of the default sampling settings; its EOS ids, which vLLM still reads, are kept
            # out of the stop tokens by ignore_eos (sampling_params), so the only ones are ours.
            "skip_tokenizer_init": True,
            "generation_config": "vllm",
            # The checkpoint's own dtype (bf16 for the paper's models), whatever the trainer keeps:
            # fp32 master weights are cast as they are loaded into the engine.
            "dtype": "auto",
            "gpu_memory_utilization": kw.get("gpu_memory_utilization" if role == "student"
                                             else "teacher_gpu_memory_utilization", 0.3),
            "tensor_parallel_size": kw.get("tensor_parallel_size", 1),
            "enforce_eager": kw.get("enforce_eager", False),
            "enable_prefix_caching": kw.get("enable_prefix_caching", True),
            "logprobs_mode": "processed_logprobs",
            "seed": 0,  # engine default; every request carries its own seed
        }
        if kw.get("max_model_len"):
            args["max_model_len"] = kw["max_model_len"]
        if self.sleep:
            args["enable_sleep_mode"] = True
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            args["distributed_executor_backend"] = "external_launcher"
        args.update(kw.get("engine_kwargs") or {})
        return args

    def _engine(self, role: str):
        if role not in self.engines:
            # In-process student engine: weight sync without serialisation (see module docstring).
            self.engines[role] = new_engine(self.vllm, self._engine_args(role), in_process=role == "student")
        llm = self.engines[role]
        if role in self.asleep:
            llm.wake_up()
            self.asleep.discard(role)
        return llm

    def _rest(self, role: str) -> None:
        if self.sleep and role in self.engines and role not in self.asleep:
            self.engines[role].sleep(level=1)
            self.asleep.add(role)

    # ------------------------------------------------------------------ interface
    def sample(self, role: str, prompts, max_new, seeds, temperature=1.0, top_p=1.0):
        if role not in ("student", "teacher"):
            raise ValueError(f"unknown role {role!r}")
        # Before the early return: under FSDP a push gathers every shard (a collective), so every
        # process pushes at the same call, with prompts or without.
        if role == "student" and fingerprint(self.student) != self._pushed:
            self._push(self._engine(role), self.student)
        if not prompts:
            self._rest(role)  # asleep again, as on every other rank (sync_weights relies on it)
            return []
        if role == "teacher" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from tropd.rollout.hf import HFBackend

            return HFBackend(self.student, self.teacher, self.eos_ids, self.pad_id, self.vocab).sample(
                "teacher", prompts, max_new, seeds, temperature, top_p)
        live = [k for k, n in enumerate(max_new) if n > 0]  # vLLM refuses max_tokens=0
        cap = self.kw.get("max_model_len") or 0
        if over := [k for k in live if len(prompts[k]) + max_new[k] > cap] if cap else []:
            # vLLM would stop such a sequence at the cap without a word; the HF backend would not.
            k = over[0]
            raise UserError(f"vllm.max_model_len={cap} cannot hold a {len(prompts[k])}-token prompt plus "
                            f"{max_new[k]} new tokens ({len(over)} such rollout(s)); "
                            "raise vllm.max_model_len")
        llm = self._engine(role)
        reqs = [{"prompt_token_ids": list(prompts[k])} for k in live]
        params = [sampling_params(self.vllm, max_new[k], seeds[k], temperature, top_p, self.eos_ids,
                                  self.banned[role]) for k in live]
        outs = llm.generate(reqs, params, use_tqdm=False) if live else []
        self._rest(role)
        results: list[tuple[list[int], list[float], bool]] = [([], [], False)] * len(prompts)
        for k, out in zip(live, outs):
            results[k] = parse_output(out, max_new[k], self.eos_ids)
        return results

    def sample_blend(self, prompts, max_new, seeds, combine, temperature=1.0, top_p=1.0):
        raise UserError("TRB's teacher/student blend is sampled token by token from both models; "
                        "the vllm backend cannot do that: use train.backend=hf for trb")

    def sync_weights(self, student) -> None:
        """Push the trainer's student weights into the engine (after each optimizer step)."""
        self.student = student
        # With sleep mode the engine sleeps between rollouts and has no weights to write into: the
        # next rollout wakes it and pushes (changed fingerprint). Decided by the setting, the same
        # on every rank, not by this rank's engine state: under FSDP a push is a collective.
        if self.sleep:
            return
        self._push(self.engines["student"], student)

    def _push(self, llm, module) -> None:
        def load(model):
            # A generator: under FSDP one full tensor is gathered at a time, not the whole model.
            model.load_weights(weights=named_weights(module))

        if hasattr(llm, "apply_model"):
            llm.apply_model(load)
        else:  # older vLLM: reach the in-process model object
            path = next((p for p in _MODEL_PATHS if _has_path(llm, p)), None)
            if path is None:
                raise UserError("vllm backend: this vLLM version offers no way to load weights into a "
                                "running engine (LLM.apply_model); install vllm>=0.10.2")
            target = llm
            for attr in path:
                target = getattr(target, attr)
            load(target)
        if hasattr(llm, "reset_prefix_cache"):
            llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        self._pushed = fingerprint(module)
        self.syncs += 1


def _has_path(obj, path: tuple[str, ...]) -> bool:
    for attr in path:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True
