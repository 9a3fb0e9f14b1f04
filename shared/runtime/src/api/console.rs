//! The web console's static files, built into the binary (no CDN, works offline): a runs list,
//! a run page and a task inbox that talk to the HTTP API. Sources in `shared/runtime/console/`;
//! `baton serve` and the `api` function on AWS both serve them, without a token (the page asks
//! for one before it reads the API).

/// The console's file at `path` (`/` is the page), with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match path {
        "/" | "/console" | "/console/" | "/console/index.html" => {
            ("text/html; charset=utf-8", include_bytes!("../../console/index.html"))
        }
        "/console/app.js" => ("text/javascript; charset=utf-8", include_bytes!("../../console/app.js")),
        "/console/style.css" => ("text/css; charset=utf-8", include_bytes!("../../console/style.css")),
        _ => return None,
    })
}
