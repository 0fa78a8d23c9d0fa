//! `adag`: circuit tracing for transformer language models.
//!
//! This binary is CLI plus glue: argument parsing (clap) and the wiring of library crates.
//! Every subcommand lives in `commands/` and returns `anyhow::Result`; `main` prints the error
//! chain and exits with status 2, so a user sees *what* failed and *why* in one message.

mod commands;
mod common;
mod tokens;

use clap::{Parser, Subcommand};

/// The backward passes allocate and free many large tensors (tens of MiB on the perf fixture,
/// 600 MB per temporary at 512 tokens of gemma-2-2b). glibc's defaults serve those with mmap
/// and unmap them on free, so every temporary is faulted in and zeroed again, page by page.
///
/// - A high mmap threshold and no trimming keep freed memory in the heap for reuse.
/// - One arena: glibc gives each thread its own arena, and an allocation larger than a thread
///   arena's 64 MiB heap bypasses the threshold and is mmapped anyway. With the backward passes
///   running on two threads, that was nearly all of them: a 512-token real-size graph took
///   277 M page faults and half its CPU time in the kernel. With one arena it takes 6.8 M and
///   runs 31% faster at lower peak memory (README, "Real sizes"); allocations are few and
///   large, so the shared arena's lock costs nothing measurable (`adag bench attribute`).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Circuit tracing for transformer language models.
#[derive(Parser)]
#[command(name = "adag", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a model directory: architecture, sizes, dtypes, tokenizer and chat template.
    Inspect(commands::inspect::Args),
    /// Tokenise a prompt and show the model's next-token distribution.
    Run(commands::run::Args),
    /// Build an attribution graph over transcoder features for a prompt.
    Attribute(commands::attribute::Args),
    /// List circuit-tracer's transcoder sets by name (for --transcoders), with model and basis.
    Presets(commands::presets::Args),
    /// Prune a saved graph and print what survives, with its scores.
    Prune(commands::graph_tools::PruneArgs),
    /// Write a saved graph as circuit-tracer frontend JSON.
    Export(commands::graph_tools::ExportArgs),
    /// Set, scale or zero transcoder features and compare predictions.
    Intervene(commands::intervene::Args),
    /// Measure throughput against this machine's matmul peak.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Feature dashboards: top activating contexts, density and logits of every feature or neuron.
    Features(commands::features::Args),
    /// Open graphs in the browser: an interactive viewer on http://127.0.0.1:8041/.
    Serve(commands::serve::Args),
    /// Serve a model as an OpenAI-compatible LLM endpoint on http://127.0.0.1:8042/v1.
    ServeLlm(commands::serve_llm::Args),
    /// Trace neuron circuits for a dataset of prompts into Parquet tables (ADAG).
    Trace(commands::trace::Args),
    /// Merge circuit shards (from `adag trace --shard I/N`) into one circuit.
    Merge(commands::merge::Args),
    /// Cluster a circuit's neurons by what they read and write (multi-view spectral).
    Cluster(commands::cluster::Args),
    /// Scale a cluster's traced neurons and report cluster and output effects.
    Steer(commands::steer::Args),
    /// Correlate cluster, neuron and edge attribution with a per-prompt metric.
    Correlate(commands::correlate::Args),
    /// Draw one prompt's tokens → clusters → outputs graph (DOT, SVG, PNG with Graphviz).
    Plot(commands::plot::Args),
    /// Describe clusters with an explainer LLM, scored by a simulator (ADAG descriptions).
    Describe(commands::describe::DescribeArgs),
    /// Give clusters 1–3-word labels from their descriptions.
    Label(commands::describe::LabelArgs),
    /// Describe single features or neurons from their dashboards (`adag features`) with an
    /// explainer LLM.
    DescribeUnits(commands::describe::UnitsArgs),
    /// Train the bundled demo model or its transcoders (CPU).
    #[command(subcommand)]
    Train(commands::train::TrainCommand),
}

fn main() {
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("ADAG_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Attribute(a) => commands::attribute::run(a),
        Command::Presets(a) => commands::presets::run(a),
        Command::Prune(a) => commands::graph_tools::run_prune(a),
        Command::Export(a) => commands::graph_tools::run_export(a),
        Command::Intervene(a) => commands::intervene::run(a),
        Command::Bench(b) => commands::bench::run(b),
        Command::Features(a) => commands::features::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::ServeLlm(a) => commands::serve_llm::run(a),
        Command::Trace(a) => commands::trace::run(a),
        Command::Merge(a) => commands::merge::run(a),
        Command::Cluster(a) => commands::cluster::run(a),
        Command::Steer(a) => commands::steer::run(a),
        Command::Correlate(a) => commands::correlate::run(a),
        Command::Plot(a) => commands::plot::run(a),
        Command::Describe(a) => commands::describe::run_describe(a),
        Command::Label(a) => commands::describe::run_label(a),
        Command::DescribeUnits(a) => commands::describe::run_units(a),
        Command::Train(t) => commands::train::run(t),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
