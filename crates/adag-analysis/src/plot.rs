//! Static cluster graph of one prompt (reference §9, `plot_circuit_graph.py`).
//!
//! Nodes are the prompt's input tokens (one per position), the clusters with nodes on the
//! prompt, and the traced output tokens. An edge's weight is the summed *edge attribution*
//! between the groups' nodes; edges inside a cluster are dropped. The `max_edges` strongest
//! edges are kept, plus each cluster's strongest incoming and outgoing edge so no cluster
//! floats. Layout is bottom-to-top: tokens, clusters by the mean layer of their nodes, outputs;
//! blue = positive, red = negative, width ∝ |weight|.
//!
//! [`ClusterGraph::to_dot`] writes Graphviz DOT; [`ClusterGraph::to_svg`] and
//! [`ClusterGraph::to_png`] render the same graph without Graphviz, with a simple layered
//! layout.

use std::collections::BTreeMap;

use adag_circuit::Circuit;

use crate::cluster::ClusterState;
use crate::error::Result;
use crate::profiles::Unit;

/// A node of the cluster graph.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotNode {
    /// Stable id (`tok3`, `C2`, `out0`).
    pub id: String,
    /// Display text.
    pub label: String,
    /// Row in the layered layout (0 = tokens, bottom).
    pub rank: usize,
    /// Summed node attribution (clusters) or probability (outputs).
    pub value: f64,
}

/// A weighted edge.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotEdge {
    /// Source node id.
    pub source: String,
    /// Target node id.
    pub target: String,
    /// Summed edge attribution.
    pub weight: f64,
}

/// The cluster graph of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterGraph {
    /// Nodes, by rank then id.
    pub nodes: Vec<PlotNode>,
    /// Kept edges, strongest first.
    pub edges: Vec<PlotEdge>,
    /// Title (the prompt).
    pub title: String,
}

/// Box size of a node in the SVG and PNG.
const BOX_W: f64 = 116.0;
const BOX_H: f64 = 30.0;

/// The part of the segment between box centres `a` and `b` that lies outside both boxes, so
/// that an edge starts and ends at box borders instead of crossing its own boxes.
fn clip(a: (f64, f64), b: (f64, f64)) -> ((f64, f64), (f64, f64)) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = [
        if dx != 0.0 {
            BOX_W / 2.0 / dx.abs()
        } else {
            f64::INFINITY
        },
        if dy != 0.0 {
            BOX_H / 2.0 / dy.abs()
        } else {
            f64::INFINITY
        },
    ];
    let t = t[0].min(t[1]).min(0.5);
    ((a.0 + t * dx, a.1 + t * dy), (b.0 - t * dx, b.1 - t * dy))
}

/// Positions from [`ClusterGraph::layout`]: canvas size and each node's centre.
struct Layout<'a> {
    width: f64,
    height: f64,
    pos: BTreeMap<&'a str, (f64, f64)>,
}

/// Fill colour of a node box: tokens grey, outputs yellow, clusters blue.
fn fill(id: &str) -> [u8; 3] {
    if id.starts_with("tok") {
        [0xee, 0xee, 0xee]
    } else if id.starts_with("out") {
        [0xff, 0xf2, 0xcc]
    } else {
        [0xdd, 0xe8, 0xff]
    }
}

/// A special token such as `<s>`, `<bos>` or `<|begin_of_text|>`.
fn is_special(t: &str) -> bool {
    t.len() > 2 && t.starts_with('<') && t.ends_with('>') && !t.contains(' ')
}

/// A token with its whitespace visible: `␣` for spaces, `↵` for newlines, `⇥` for tabs, `∅`
/// for an empty string.
pub fn visible(t: &str) -> String {
    if t.is_empty() {
        return "∅".into();
    }
    t.chars()
        .map(|c| match c {
            ' ' => '␣',
            '\n' => '↵',
            '\t' => '⇥',
            c => c,
        })
        .collect()
}

/// A probability for a label: two decimals, or one significant digit below 0.01.
fn probability(p: f32) -> String {
    if p >= 0.01 || p == 0.0 {
        format!("{p:.2}")
    } else {
        format!("{p:.0e}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl ClusterGraph {
    /// Builds the graph of prompt `prompt_id`.
    pub fn build(
        circuit: &Circuit,
        clusters: &ClusterState,
        prompt_id: u64,
        max_edges: usize,
    ) -> Result<Self> {
        let prompt = crate::steer::circuit_prompt(circuit, prompt_id)?;
        // (layer, position, neuron) → group id.
        let mut group: BTreeMap<(i32, u32, u32), String> = BTreeMap::new();
        let mut layers: BTreeMap<String, (f64, usize, f64)> = BTreeMap::new();
        for n in circuit.nodes.iter().filter(|n| n.prompt_id == prompt_id) {
            let is_neuron =
                n.layer >= 0 && !(n.input_profile.is_empty() && n.output_profile.is_empty());
            let g = if n.layer < 0 {
                format!("tok{}", n.position)
            } else if !is_neuron {
                match prompt.target_ids.iter().position(|&t| t == n.neuron) {
                    Some(i) => format!("out{i}"),
                    None => continue,
                }
            } else {
                match clusters.cluster_of(&Unit::of_node(n.layer, n.neuron, n.activation)) {
                    Some(c) => {
                        let e = layers.entry(c.to_string()).or_default();
                        e.0 += n.layer as f64;
                        e.1 += 1;
                        e.2 += n.attribution as f64;
                        c.to_string()
                    }
                    None => continue,
                }
            };
            group.insert((n.layer, n.position, n.neuron), g);
        }
        let mut sums: BTreeMap<(String, String), f64> = BTreeMap::new();
        for e in circuit.edges.iter().filter(|e| e.prompt_id == prompt_id) {
            let (Some(s), Some(t)) = (
                group.get(&(e.source_layer, e.source_position, e.source_neuron)),
                group.get(&(e.target_layer, e.target_position, e.target_neuron)),
            ) else {
                continue;
            };
            if s != t {
                *sums.entry((s.clone(), t.clone())).or_default() += e.attribution as f64;
            }
        }
        let mut all: Vec<PlotEdge> = sums
            .into_iter()
            .map(|((source, target), weight)| PlotEdge {
                source,
                target,
                weight,
            })
            .collect();
        all.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
        let mut keep: Vec<bool> = (0..all.len()).map(|i| i < max_edges).collect();
        for c in layers.keys() {
            for incoming in [true, false] {
                if let Some(i) = all.iter().position(|e| {
                    if incoming {
                        &e.target == c
                    } else {
                        &e.source == c
                    }
                }) {
                    keep[i] = true;
                }
            }
        }
        let edges: Vec<PlotEdge> = all
            .into_iter()
            .zip(keep)
            .filter_map(|(e, k)| k.then_some(e))
            .collect();
        // Ranks: tokens 0, clusters by mean layer (distinct mean layers get distinct rows),
        // outputs last.
        let mut means: Vec<(f64, String)> = layers
            .iter()
            .map(|(c, (s, n, _))| (s / *n as f64, c.clone()))
            .collect();
        means.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut rank_of: BTreeMap<String, usize> = BTreeMap::new();
        let mut distinct: Vec<i64> = means
            .iter()
            .map(|(m, _)| (m * 2.0).round() as i64)
            .collect();
        distinct.dedup();
        for (m, c) in &means {
            let key = (m * 2.0).round() as i64;
            rank_of.insert(
                c.clone(),
                1 + distinct.iter().position(|&d| d == key).unwrap_or(0),
            );
        }
        let top_rank = distinct.len() + 1;
        let mut nodes = Vec::new();
        for (i, s) in prompt.token_strings.iter().enumerate() {
            // The BOS token carries no meaning of its own (its position is zeroed in attribution):
            // a special token like `<|begin_of_text|>` at position 0 is not drawn.
            if i == 0 && is_special(s) {
                continue;
            }
            nodes.push(PlotNode {
                id: format!("tok{i}"),
                label: visible(s),
                rank: 0,
                value: 0.0,
            });
        }
        for (_, c) in &means {
            let name = clusters
                .find(c)
                .map(|x| x.label.clone().unwrap_or_else(|| x.name.clone()))
                .unwrap_or_else(|| c.clone());
            let label = if &name == c {
                c.clone()
            } else {
                format!("{c}: {name}")
            };
            nodes.push(PlotNode {
                id: c.clone(),
                label,
                rank: rank_of[c],
                value: layers[c].2,
            });
        }
        for (i, s) in prompt.target_strings.iter().enumerate() {
            let p = prompt.target_probs.get(i).copied().unwrap_or(0.0);
            nodes.push(PlotNode {
                id: format!("out{i}"),
                // The token made visible (a space-only target read "  (p=0.00)"), and a
                // probability that is not rounded to 0.
                label: format!("\"{}\" p={}", visible(s), probability(p)),
                rank: top_rank,
                value: prompt.target_probs.get(i).copied().unwrap_or(0.0) as f64,
            });
        }
        let drawn: std::collections::BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        let edges = edges
            .into_iter()
            .filter(|e| drawn.contains(e.source.as_str()) && drawn.contains(e.target.as_str()))
            .collect();
        Ok(ClusterGraph {
            nodes,
            edges,
            title: prompt.prompt.clone(),
        })
    }

    fn width(&self, w: f64) -> f64 {
        let max = self
            .edges
            .iter()
            .map(|e| e.weight.abs())
            .fold(0.0, f64::max);
        if max > 0.0 {
            0.5 + 6.0 * w.abs() / max
        } else {
            1.0
        }
    }

    /// Graphviz DOT (`dot -Tpdf`).
    pub fn to_dot(&self) -> String {
        let mut s = format!(
            "digraph circuit {{\n  rankdir=BT;\n  label=\"{}\";\n  node [shape=box, style=rounded];\n",
            esc(&self.title)
        );
        let max_rank = self.nodes.iter().map(|n| n.rank).max().unwrap_or(0);
        for r in 0..=max_rank {
            s.push_str("  { rank=same;");
            let row: Vec<&PlotNode> = self.nodes.iter().filter(|n| n.rank == r).collect();
            for n in &row {
                s.push_str(&format!(" \"{}\" [label=\"{}\"];", n.id, esc(&n.label)));
            }
            // Invisible edges along the row keep the prompt's tokens in order (Graphviz
            // otherwise reorders a rank to shorten edges).
            if r == 0 && row.len() > 1 {
                let chain: Vec<String> = row.iter().map(|n| format!("\"{}\"", n.id)).collect();
                s.push_str(&format!(" {} [style=invis];", chain.join(" -> ")));
            }
            s.push_str(" }\n");
        }
        for e in &self.edges {
            s.push_str(&format!(
                "  \"{}\" -> \"{}\" [color={}, penwidth={:.2}, tooltip=\"{:.4}\"];\n",
                e.source,
                e.target,
                if e.weight >= 0.0 { "blue" } else { "red" },
                self.width(e.weight),
                e.weight
            ));
        }
        s.push_str("}\n");
        s
    }

    /// Node positions of the layered layout (rows by rank, bottom to top) shared by the SVG
    /// and the PNG, so the two pictures agree.
    fn layout(&self) -> Layout<'_> {
        let max_rank = self.nodes.iter().map(|n| n.rank).max().unwrap_or(0);
        let per_row = |r: usize| self.nodes.iter().filter(|n| n.rank == r).count();
        let widest = (0..=max_rank).map(per_row).max().unwrap_or(1).max(1);
        let (cell, row_h) = (130.0, 110.0);
        let width = widest as f64 * cell + 40.0;
        let height = (max_rank + 1) as f64 * row_h + 60.0;
        let mut pos: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for r in 0..=max_rank {
            let row: Vec<&PlotNode> = self.nodes.iter().filter(|n| n.rank == r).collect();
            let offset = (width - row.len() as f64 * cell) / 2.0;
            for (i, n) in row.iter().enumerate() {
                let x = offset + (i as f64 + 0.5) * cell;
                let y = height - 40.0 - r as f64 * row_h;
                pos.insert(n.id.as_str(), (x, y));
            }
        }
        Layout { width, height, pos }
    }

    /// A self-contained SVG with a layered layout (rows by rank, bottom to top).
    pub fn to_svg(&self) -> String {
        let Layout { width, height, pos } = self.layout();
        let (box_w, box_h) = (BOX_W, BOX_H);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
             font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"18\" font-size=\"13\">{}</text>\n\
             <defs><marker id=\"arrow-pos\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" \
             markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#2060d0\"/></marker>\
             <marker id=\"arrow-neg\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" \
             markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#d03020\"/></marker></defs>\n",
            esc(&self.title)
        );
        for e in self.edges.iter().rev() {
            let (Some(a), Some(b)) = (pos.get(e.source.as_str()), pos.get(e.target.as_str()))
            else {
                continue;
            };
            let (a, b) = clip(*a, *b);
            s.push_str(&format!(
                "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" \
                 stroke-opacity=\"0.6\" stroke-width=\"{:.2}\" marker-end=\"url(#{})\">\
                 <title>{} → {}: {:.4}</title></line>\n",
                a.0,
                a.1,
                b.0,
                b.1,
                if e.weight >= 0.0 {
                    "#2060d0"
                } else {
                    "#d03020"
                },
                self.width(e.weight),
                if e.weight >= 0.0 {
                    "arrow-pos"
                } else {
                    "arrow-neg"
                },
                esc(&e.source),
                esc(&e.target),
                e.weight
            ));
        }
        for n in &self.nodes {
            let Some(&(x, y)) = pos.get(n.id.as_str()) else {
                continue;
            };
            let [r, g, b] = fill(&n.id);
            let fill = format!("#{r:02x}{g:02x}{b:02x}");
            let label: String = n.label.chars().take(18).collect();
            s.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{box_w}\" height=\"{box_h}\" rx=\"6\" fill=\"{fill}\" \
                 stroke=\"#555\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                x - box_w / 2.0,
                y - box_h / 2.0,
                y + 4.0,
                esc(&label)
            ));
        }
        s.push_str("</svg>\n");
        s
    }

    /// The same picture as [`ClusterGraph::to_svg`] as a PNG, rendered by adag (no Graphviz):
    /// labels in DejaVu Sans (see [`crate::raster`]), cut with "…" to fit their boxes, and an
    /// arrowhead at each edge's target.
    pub fn to_png(&self) -> Vec<u8> {
        use crate::raster::Canvas;
        let Layout { width, height, pos } = self.layout();
        let mut c = Canvas::new(width as usize, height as usize, [255, 255, 255]);
        c.text_centred(
            width / 2.0,
            8.0,
            &c.fit(&self.title, width - 20.0),
            [0, 0, 0],
        );
        for e in self.edges.iter().rev() {
            let (Some(a), Some(b)) = (pos.get(e.source.as_str()), pos.get(e.target.as_str()))
            else {
                continue;
            };
            let colour = if e.weight >= 0.0 {
                [0x20, 0x60, 0xd0]
            } else {
                [0xd0, 0x30, 0x20]
            };
            let (a, b) = clip(*a, *b);
            let w = self.width(e.weight);
            c.line(a.0, a.1, b.0, b.1, w, colour, 0.6);
            c.arrowhead(a, b, 7.0 + w, colour);
        }
        for n in &self.nodes {
            let Some(&(x, y)) = pos.get(n.id.as_str()) else {
                continue;
            };
            let (bx, by) = (x - BOX_W / 2.0, y - BOX_H / 2.0);
            c.fill_rect(bx, by, BOX_W, BOX_H, fill(&n.id));
            c.stroke_rect(bx, by, BOX_W, BOX_H, [0x55, 0x55, 0x55]);
            c.text_centred(x, y - 7.0, &c.fit(&n.label, BOX_W - 8.0), [0, 0, 0]);
        }
        c.to_png()
    }
}
