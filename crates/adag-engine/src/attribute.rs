//! Attribution graphs as circuit-tracer's `attribute` builds them, in any [`Basis`]: transcoder
//! features (circuit-tracer's graphs) or MLP neurons (the same graph with neurons as nodes and
//! no error nodes). This is the engine's one driver.
//!
//! Phases: (0) a forward pass caches the frozen quantities and what the basis reads, and the
//! basis is bound to the prompt (active nodes, seed rows, source groups); (1) logit targets are chosen; (2) one row
//! per logit target; (3) one row per feature, in order of influence on the logits when
//! `max_feature_nodes` caps them (re-ranked every `update_interval` batches as rows arrive);
//! (4) the dense adjacency is assembled in circuit-tracer's node order. A row is one seed of a
//! batched vector–Jacobian product through the frozen model; its entries are read off at every
//! lower layer's write site by one matrix product per (layer, position).

use std::time::Instant;

use adag_core::{HookName, Site};
use adag_graph::{Graph, GraphMeta};
use adag_model::{Batch, LastLogitsOnly, ModelTokenizer, Transformer};

use crate::accounting::{account, Inputs, Rows};
use crate::basis::Basis;
use crate::driver::{Driver, RowStore};
use crate::error::{Context, Error, Result};
use crate::frozen::FrozenModel;
use crate::targets::{select_targets, TargetSpec};

/// Settings of [`attribute`], with circuit-tracer's defaults.
#[derive(Debug, Clone)]
pub struct AttributeOptions {
    /// Which logits to explain.
    pub targets: TargetSpec,
    /// Seeds per backward pass.
    pub batch_size: usize,
    /// Cap on feature nodes (None: every active feature).
    pub max_feature_nodes: Option<usize>,
    /// Batches between influence re-rankings.
    pub update_interval: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for AttributeOptions {
    fn default() -> Self {
        AttributeOptions {
            targets: TargetSpec::Salient {
                max_n_logits: 10,
                desired_logit_prob: 0.95,
            },
            batch_size: 256,
            max_feature_nodes: None,
            update_interval: 4,
            progress: false,
        }
    }
}

/// Tokens for a prompt as circuit-tracer prepares them: encoded without special tokens, then a
/// BOS-like token prepended unless the prompt already starts with a special token. The token is
/// the first of BOS, pad, EOS, or any special token that exists (circuit-tracer's
/// `filter(None, …)` also skips id 0, a bug: adag keeps an id-0 BOS).
pub fn prepare_tokens(tok: &ModelTokenizer, prompt: &str) -> Result<Vec<u32>> {
    let mut ids = tok.encode(prompt, false).map_err(adag_model::Error::from)?;
    if ids.is_empty() {
        return Err(Error::Invalid("the prompt is empty (no tokens)".into()));
    }
    if !tok.special_ids().contains(&ids[0]) {
        let bos = tok
            .bos_policy()
            .bos_token
            .as_ref()
            .map(|b| b.1)
            .or_else(|| tok.pad_token().map(|p| p.1))
            .or_else(|| tok.eos_token().map(|e| e.1))
            .or_else(|| tok.special_ids().iter().next().copied());
        if let Some(b) = bos {
            ids.insert(0, b);
        }
    }
    Ok(ids)
}

fn progress_bar(show: bool, len: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>18} [{bar:30}] {pos}/{len} rows {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// Builds the attribution graph of `tokens` (see [`prepare_tokens`]) in `basis` (a
/// [`TranscoderSet`](crate::TranscoderSet) or a [`NeuronBasis`](crate::NeuronBasis)).
///
/// `meta` carries the descriptive fields (model, prompt, token strings, scan); sizes, settings,
/// and phase timings are filled in here.
pub fn attribute(
    model: &Transformer,
    tokens: &[u32],
    basis: &dyn Basis,
    opts: &AttributeOptions,
    meta: GraphMeta,
    token_str: &dyn Fn(u32) -> String,
) -> Result<Graph> {
    attribute_with_progress(model, tokens, basis, opts, meta, token_str, &mut |_, _| {
        true
    })
}

/// [`attribute`] that reports `(rows done, rows planned)` after every backward batch to
/// `on_batch`, which returns `false` to stop: the call then fails with [`Error::Cancelled`].
/// This is how a caller that owns the event loop (the Python package: Ctrl-C, progress bars)
/// stays responsive during a long attribution without the engine knowing about it.
pub fn attribute_with_progress(
    model: &Transformer,
    tokens: &[u32],
    basis: &dyn Basis,
    opts: &AttributeOptions,
    mut meta: GraphMeta,
    token_str: &dyn Fn(u32) -> String,
    on_batch: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Graph> {
    basis.check_model(&model.cfg)?;
    if opts.batch_size == 0 {
        return Err(Error::Invalid("batch_size must be at least 1".into()));
    }
    let mut timings = serde_json::Map::new();
    let mut clock = Instant::now();
    let mut phase = |name: &str, clock: &mut Instant| {
        timings.insert(
            name.to_string(),
            serde_json::json!(clock.elapsed().as_secs_f64()),
        );
        *clock = Instant::now();
    };

    // Phase 0: forward pass, and the basis bound to the prompt.
    let filter = FrozenModel::cache_filter().union(&basis.cache_filter());
    // Only the next-token distribution is read from the logits.
    let out = model.forward_with(&Batch::single(tokens)?, &filter, &mut LastLogitsOnly)?;
    let frozen = FrozenModel::new(model, &out.cache, 0)?;
    let driver = Driver::new(model, frozen, basis, basis.prompt(model, &out.cache, 0)?)?;
    let active = driver.nodes.active();
    let n_active = active.len();
    let n_cols = driver.n_cols();
    let (n_layers, n_pos) = (model.cfg.n_layers, tokens.len());
    phase("precompute", &mut clock);

    // Phase 1: targets.
    let last = out.last_logits(0)?.to_vec1::<f32>().ctx("logits")?;
    let targets = select_targets(&opts.targets, &last, &model.weights.unembed, token_str)?;
    let k = targets.targets.len();
    phase("targets", &mut clock);

    let f_cap = opts.max_feature_nodes.unwrap_or(n_active).min(n_active);
    let pb = progress_bar(opts.progress, k + f_cap);
    let mut store = RowStore::new(n_cols, f_cap < n_active, k + f_cap);

    // Phase 2: logit rows.
    pb.set_message("logit rows");
    driver.target_rows(
        &targets.directions,
        opts.batch_size,
        &mut store,
        &mut |done| {
            pb.set_position(done as u64);
            on_batch(done, k + f_cap)
        },
    )?;
    phase("logit_attribution", &mut clock);

    // Phase 3: feature rows, most influential first when capped.
    pb.set_message("feature rows");
    let mut visited = vec![false; n_active];
    let mut n_visited = 0;
    while n_visited < f_cap {
        let pending: Vec<usize> = if f_cap == n_active {
            (0..n_active).filter(|&i| !visited[i]).collect()
        } else {
            let infl = store.partial_influence(&targets.probs)?;
            let mut order: Vec<usize> = (0..n_active).filter(|&i| !visited[i]).collect();
            order.sort_by(|&a, &b| infl[b].total_cmp(&infl[a]).then(a.cmp(&b)));
            order.truncate((opts.update_interval * opts.batch_size).min(f_cap - n_visited));
            order
        };
        // The round's rows are planned together into backward passes of at most
        // `batch_size` rows over nearby positions (`Driver::node_rows`); the set of rows does
        // not depend on the plan.
        let before = n_visited;
        driver.node_rows(&pending, opts.batch_size, &mut store, &mut |done| {
            pb.set_position((k + before + done) as u64);
            on_batch(k + before + done, k + f_cap)
        })?;
        for &i in &pending {
            visited[i] = true;
        }
        n_visited += pending.len();
    }
    pb.finish_and_clear();
    phase("feature_attribution", &mut clock);
    // Per kernel, for the rows alone (the accounting's runs below are its own phase).
    let kernels = driver.frozen.kernel_report();

    let selected: Vec<u32> = (0..n_active)
        .filter(|&i| visited[i])
        .map(|i| i as u32)
        .collect();
    let target_ids: Vec<u32> = targets.targets.iter().map(|t| t.vocab_idx).collect();
    if let Some(transcoders) = basis.transcoders() {
        let unembed_mean = crate::accounting::unembed_mean(&model.weights.unembed)?;
        meta.accounting = Some(account(
            &Inputs {
                model,
                clean: &out.cache,
                transcoders,
                tokens,
                directions: &targets.directions,
                target_ids: &target_ids,
                active,
                selected: &selected,
                unembed_mean: &unembed_mean,
            },
            &Rows {
                rows: &store.rows,
                node: &store.node,
                n_active,
                n_errors: n_layers * n_pos,
            },
        )?);
        phase("accounting", &mut clock);
    }

    let (read_site, write_site) = basis.sites();
    let hook = |site: Site| {
        HookName::Block(0, site)
            .to_string()
            .replacen("blocks.0.", "", 1)
    };
    meta.settings = serde_json::json!({
        "targets": opts.targets.describe(),
        "batch_size": opts.batch_size,
        "max_feature_nodes": opts.max_feature_nodes,
        "update_interval": opts.update_interval,
        "n_active_features": n_active,
        "feature_input_hook": hook(read_site.site()),
        "feature_output_hook": hook(write_site.site()),
        "backward_flops": driver.flops(),
    });
    // Phase 4: the dense adjacency in node order.
    let mut graph = driver.graph(basis, &store, selected, tokens, targets, meta)?;
    phase("assembly", &mut clock);
    timings.insert("backward_kernels".into(), kernels);
    graph.meta.timings = serde_json::Value::Object(timings);
    Ok(graph)
}
