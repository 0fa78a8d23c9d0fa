//! `adag.serve`: the graph viewer on a background thread of this process.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;

use crate::errors::{invalid, to_py};

/// A running viewer. It serves until `shutdown()` or until the Python process ends.
#[pyclass(module = "adag._adag", frozen)]
pub struct Server {
    url: String,
    inner: Mutex<Option<adag_serve::Server>>,
}

#[pymethods]
impl Server {
    /// Starts serving the frontend graph files in `dir` (port 0: any free port).
    #[new]
    #[pyo3(signature = (dir, port=0, host="127.0.0.1", slug=None))]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        port: u16,
        host: &str,
        slug: Option<String>,
    ) -> PyResult<Server> {
        let host: IpAddr = host
            .parse()
            .map_err(|e| invalid(format!("host {host:?}: {e}")))?;
        let mut config = adag_serve::ServeConfig::new(&dir).port(port).host(host);
        if let Some(s) = slug {
            config = config.slug(s);
        }
        let server = py.detach(|| adag_serve::Server::start(config).map_err(to_py))?;
        Ok(Server {
            url: server.url(),
            inner: Mutex::new(Some(server)),
        })
    }

    /// The URL to open.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops the server (idempotent).
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.inner.lock().ok().and_then(|mut s| s.take());
        match s {
            Some(s) => py.detach(|| s.shutdown().map_err(to_py)),
            None => Ok(()),
        }
    }

    fn __repr__(&self) -> String {
        format!("Server({:?})", self.url)
    }
}
