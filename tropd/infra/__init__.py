"""Infrastructure the loop stands on, none of it about distillation: data-parallel and FSDP training
(dist, fsdp), the vLLM engine's life cycle (vllm_engine), fault injection (faults), atomic file
writes (io) and seed derivation (seeding)."""
