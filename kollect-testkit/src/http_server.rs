//! The HTTP(S)/1.1 serving loop the test servers share: a loopback listener served on a thread
//! of its own with its own tokio runtime (so it serves every test of a binary, whatever runtime
//! each test uses), optionally behind TLS, stopped on drop.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

use crate::pki::ServingPki;

/// A TLS acceptor serving `pki`'s certificate.
pub(crate) fn tls_acceptor(pki: &ServingPki) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A server thread; dropping it stops the server.
pub(crate) struct Running {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `listener` (non-blocking) with `handle` on a thread named `name`.
pub(crate) fn spawn<H, F>(
    name: &str,
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handle: H,
) -> std::io::Result<Running>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(serve(listener, tls, handle, rx));
    })?;
    Ok(Running {
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

async fn serve<H, F>(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handle: H,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let handle = handle.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = handle(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    // A failed handshake (a client rejecting the certificate) ends the connection.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
    }
}

/// A TCP forwarder from a loopback port to `target` that can be taken down and brought back on
/// the same port: while down nothing listens, so clients see connections refused.
pub(crate) struct Gate {
    port: u16,
    target: std::net::SocketAddr,
    running: Option<Running>,
}

impl Gate {
    /// Opens a gate on a free port.
    pub(crate) fn open(target: std::net::SocketAddr) -> std::io::Result<Self> {
        let port = crate::ports::free_port()?;
        let mut gate = Self {
            port,
            target,
            running: None,
        };
        gate.up()?;
        Ok(gate)
    }

    /// The gate's port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops listening and drops open connections.
    pub(crate) fn down(&mut self) {
        self.running = None;
    }

    /// Listens again on the same port.
    pub(crate) fn up(&mut self) -> std::io::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port))?;
        listener.set_nonblocking(true)?;
        let target = self.target;
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("gate".to_owned())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let mut connections = tokio::task::JoinSet::new();
                    loop {
                        let accepted = tokio::select! {
                            accepted = listener.accept() => accepted,
                            _ = &mut rx => return,
                        };
                        let Ok((mut inbound, _)) = accepted else {
                            continue;
                        };
                        connections.spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                });
            })?;
        self.running = Some(Running {
            shutdown: Some(tx),
            thread: Some(thread),
        });
        Ok(())
    }
}
