//! The reference server of `scripts/bench.sh`: the HTTP ceiling the gateway is measured against.
//!
//! A minimal actix-web app with the gateway's worker count (actix's default, one per core, which
//! the gateway's API listener also uses) and one POST route that parses a small JSON body into a
//! typed value and echoes it back as JSON: the framework work every API request pays (accept,
//! HTTP/1.1 parsing, body read, serde both ways) and nothing else.
//!
//! Run: `cargo run --release --example echo -- 127.0.0.1:18080`, then
//! `curl -d '{"phoneNumber":"+34600000001","message":"hi"}' -H 'Content-Type: application/json'
//! http://127.0.0.1:18080/echo`.

use actix_web::{web, App, HttpServer};
use serde::{Deserialize, Serialize};

/// A body shaped like a send-code request.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Echo {
    phone_number: String,
    message: String,
}

async fn echo(body: web::Json<Echo>) -> web::Json<Echo> {
    body
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_owned());
    // actix's own signal handling stops the server on SIGTERM/SIGINT.
    let server = HttpServer::new(|| App::new().route("/echo", web::post().to(echo)))
        .bind(&listen)?
        .run();
    println!("echo listening on http://{listen}/echo");
    server.await
}
