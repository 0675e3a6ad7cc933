//! `GET /admin/export`: the whole store in the export format ([`crate::backup`]), NDJSON,
//! while the service runs. The store is read on a blocking thread that hands the file over
//! in chunks through a bounded channel, so the response holds a few chunks in memory whatever
//! the store's size, and a slow client slows the reading down instead of piling it up. When
//! the export fails half-way the response is cut off before its trailer, which is how an
//! import knows it is incomplete; when the client goes away the reading stops.

use std::io;

use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use tokio::sync::mpsc;

use super::Admin;
use crate::program::Program;

/// Chunks in flight between the reading thread and the response (each up to the export's
/// 64 KiB buffer).
const CHUNKS: usize = 8;

#[tracing::instrument(name = "admin.export", skip_all)]
pub(super) async fn export(_: Admin, program: web::Data<Program>) -> HttpResponse {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS);
    let program = program.into_inner();
    tracing::info!("admin started an export");
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks(tx);
        match program.export(&mut out) {
            Ok(summary) => tracing::info!(
                members = summary.counts.members,
                bytes = summary.bytes,
                "export finished"
            ),
            Err(e) => {
                let message = crate::telemetry::chain(&e);
                tracing::error!(error = %message, "export failed; the response is cut off before its last line");
                // The client may be gone already; then there is nobody to tell.
                let _ = out.0.blocking_send(Err(io::Error::other(message)));
            }
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"loyalty-bot-export.ndjson\"",
        ))
        .streaming(body)
}

/// The export's output: each write becomes one chunk of the response.
struct Chunks(mpsc::Sender<io::Result<Bytes>>);

impl io::Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
