//! One module per subcommand.
pub mod attribute;
pub mod bench;
pub mod graph_tools;
pub mod inspect;
pub mod intervene;
pub mod merge;
pub mod run;
pub mod serve;
pub mod trace;
pub mod train;
