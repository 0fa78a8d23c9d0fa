//! One module per subcommand.
pub mod attribute;
pub mod bench;
pub mod cluster;
pub mod correlate;
pub mod describe;
pub mod features;
pub mod graph_tools;
pub mod inspect;
pub mod intervene;
pub mod merge;
pub mod plot;
pub mod run;
pub mod serve;
pub mod serve_llm;
pub mod steer;
pub mod trace;
pub mod train;
