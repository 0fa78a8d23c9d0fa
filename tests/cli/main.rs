//! The `adag` command as a user runs it: one test binary with a module per area, so the
//! workspace is linked into a test executable once rather than once per file.
//!
//! `common` runs the binary from the repository root (committed fixture paths resolve) with no
//! SLURM variables leaking in; each module checks what its commands promise to write and that
//! bad input is a clean error (exit 2, no panic).

mod accounting_cli;
mod accounting_frontend;
mod analysis_cli;
mod analysis_demo;
mod attention_viewer;
mod cli;
mod common;
mod dashboards_viewer;
mod demo_story;
mod describe_cli;
mod features_cli;
mod hardening;
mod hub_cli;
mod leiden_cli;
mod rich_label_cli;
mod serve_llm_cli;
mod steer_asr_cli;
mod trace_cli;
