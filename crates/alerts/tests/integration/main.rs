//! Integration tests with real parts: Mosquitto on 127.0.0.1 (started and
//! stopped by pid) and, for stage two, the real Qwen2.5-Coder-0.5B.
//! Collected in one target so llama.cpp is linked once.

mod delivery;
mod support;
mod triage;
