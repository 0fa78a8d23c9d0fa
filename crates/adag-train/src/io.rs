//! Atomic file writes: a crashed or interrupted run never leaves a half-written bundle file.

use std::path::Path;

use crate::error::{io_err, Result};

/// Writes `bytes` to `path` atomically through the workspace's one [`adag_core::write_atomic`]
/// (temporary file in the same folder, fsync, rename, fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    adag_core::write_atomic(path, bytes).map_err(io_err(path))
}
