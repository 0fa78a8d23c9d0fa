//! The browser UI, embedded in the binary: one HTML page, one stylesheet, ES modules.

/// An embedded file: bytes and content type.
pub(crate) struct Asset {
    pub body: &'static str,
    pub content_type: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page served at `/`.
pub(crate) const INDEX_HTML: &str = include_str!("../assets/index.html");

/// Looks up `/assets/{name}`.
pub(crate) fn get(name: &str) -> Option<Asset> {
    let (body, content_type) = match name {
        "app.css" => (include_str!("../assets/app.css"), "text/css; charset=utf-8"),
        "js/main.js" => (include_str!("../assets/js/main.js"), JS),
        "js/model.js" => (include_str!("../assets/js/model.js"), JS),
        "js/state.js" => (include_str!("../assets/js/state.js"), JS),
        "js/canvas.js" => (include_str!("../assets/js/canvas.js"), JS),
        "js/panel.js" => (include_str!("../assets/js/panel.js"), JS),
        "js/subgraph.js" => (include_str!("../assets/js/subgraph.js"), JS),
        "js/features.js" => (include_str!("../assets/js/features.js"), JS),
        "js/accounting.js" => (include_str!("../assets/js/accounting.js"), JS),
        "js/util.js" => (include_str!("../assets/js/util.js"), JS),
        "js/heads.js" => (include_str!("../assets/js/heads.js"), JS),
        _ => return None,
    };
    Some(Asset { body, content_type })
}
