//! The console's static files, compiled into the binary: no CDN, nothing fetched from
//! outside the closed network. They are immutable per build, so they may be cached.

use actix_web::{HttpRequest, HttpResponse, http::header, web};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/style.css"),
    },
    Asset {
        path: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/console.js"),
    },
    // htmx 2.0.11 (BSD Zero Clause; assets/htmx.LICENSE), from the npm registry's htmx.org.
    Asset {
        path: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/htmx.min.js"),
    },
];

/// Build-specific tag: the package version and the asset's length are enough to tell
/// apart the files of two releases for a browser cache.
fn etag(a: &Asset) -> String {
    format!("\"{}-{}\"", env!("CARGO_PKG_VERSION"), a.body.len())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/assets/{name}", web::get().to(serve));
}

async fn serve(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.path == name.as_str()) else {
        return HttpResponse::NotFound().finish();
    };
    let tag = etag(asset);
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes())
    {
        return HttpResponse::NotModified().finish();
    }
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .body(asset.body)
}
