//! The load generator: `clients` virtual clients, each on its own keep-alive HTTP/1.1
//! connection (hyper, no pool), sending one request at a time, for a warm-up and then a
//! measured window. A request counts when it completes inside the window; its latency goes
//! into one sorted `Vec` (exact percentiles). Errors are counted over the whole run.
//!
//! Closed loop (the default): each client sends its next request as soon as the previous one
//! completed, so the service runs flat out and the figures are its capacity; latency there is
//! mostly queueing (64 requests in flight / throughput). Paced ([`Plan::rate`], open loop like
//! wrk2): each client sends on a fixed schedule, together `rate` requests per second, and a
//! request's latency counts from its scheduled time, so a slow answer that delays the next send
//! is charged to that request too (no coordinated omission). That is latency *at* a given load.
//! An end-to-end request ([`Expect::Reply`]) frees its connection once the webhook is answered,
//! as Meta's deliveries do; its reply is awaited on the side, still timed from the schedule.
//! (Closed loop, the client waits for the reply before typing again, like a customer.)

use crate::fakes::Reply;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// How long an end-to-end request waits for its effect (a Send API reply) before it is lost.
const EFFECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub clients: usize,
    pub warmup: Duration,
    pub window: Duration,
    /// Paced: requests per second over all clients; `None`: closed loop.
    pub rate: Option<f64>,
}

impl Plan {
    /// This plan, paced at `rate` requests per second.
    pub fn paced(self, rate: f64) -> Plan {
        Plan {
            rate: Some(rate),
            ..self
        }
    }
}

/// One request to send, and what makes it a success.
pub struct Call {
    pub path: &'static str,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub expect: Expect,
}

pub enum Expect {
    /// Any 2xx.
    Success,
    /// A 2xx whose body contains this text.
    BodyContains(&'static str),
    /// A 2xx, and then a successful reply at the fake Send API; the request completes when the
    /// reply arrives there.
    Reply(oneshot::Receiver<Reply>),
}

/// A workload: the `seq`-th request of virtual client `client`.
/// The member a client uses for its `seq`-th request: client c owns members c, c + C, c + 2C, …,
/// so no member ever has two requests in flight.
pub fn owned_member(client: usize, clients: usize, members: usize, seq: u64) -> u64 {
    let per_client = (members / clients).max(1) as u64;
    client as u64 + clients as u64 * (seq % per_client)
}

pub trait Scenario: Send + Sync + 'static {
    fn call(&self, client: usize, seq: u64) -> Call;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Errors {
    pub non_2xx: u64,
    pub transport: u64,
    /// 2xx with the wrong answer, or (end to end) no successful reply in time.
    pub wrong: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.non_2xx + self.transport + self.wrong
    }
    fn add(&mut self, o: &Errors) {
        self.non_2xx += o.non_2xx;
        self.transport += o.transport;
        self.wrong += o.wrong;
    }
}

/// The result of one workload.
#[derive(Debug, Default)]
pub struct Measured {
    pub window: Duration,
    /// The requests completed in the window as (sent, in ms after the window's start; latency
    /// in µs), sorted by latency.
    samples: Vec<(u32, u32)>,
    pub errors: Errors,
    /// CPU time the whole process (service, fakes, load generator) used during the window.
    pub cpu: Option<Duration>,
    /// The part of `cpu` that the threads serving the requests used (`machine::harness_cpu`):
    /// the service's, or the bare handler's in its row.
    pub server_cpu: Option<Duration>,
    /// The service's group-commit flushes during the workload (warm-up included).
    pub flushes: Option<loyalty_bot::store::FlushStats>,
}

impl Measured {
    /// Process CPU time per request completed in the window, in µs.
    pub fn cpu_per_request_us(&self) -> Option<f64> {
        let n = self.completed();
        (n > 0).then_some(())?;
        Some(self.cpu?.as_secs_f64() * 1e6 / n as f64)
    }
    /// The server's CPU time per request completed in the window, in µs.
    pub fn server_cpu_per_request_us(&self) -> Option<f64> {
        let n = self.completed();
        (n > 0).then_some(())?;
        Some(self.server_cpu?.as_secs_f64() * 1e6 / n as f64)
    }
    pub fn completed(&self) -> usize {
        self.samples.len()
    }
    pub fn rate(&self) -> f64 {
        self.completed() as f64 / self.window.as_secs_f64()
    }
    /// The 99th percentile latency, in ms, of the requests sent in each `slice` of the window, in
    /// order: a stall shows as a run of high values, a periodic one as a pattern.
    pub fn p99_by_slice(&self, slice: Duration) -> Vec<f64> {
        let width = slice.as_millis().max(1) as usize;
        let slices = (self.window.as_millis() as usize).div_ceil(width);
        let mut by_slice = vec![Vec::new(); slices];
        for &(sent_ms, us) in &self.samples {
            if let Some(v) = by_slice.get_mut(sent_ms as usize / width) {
                v.push(us);
            }
        }
        by_slice
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(|mut v| {
                v.sort_unstable();
                let rank = ((0.99 * v.len() as f64).ceil() as usize).clamp(1, v.len());
                f64::from(v[rank - 1]) / 1000.0
            })
            .collect()
    }

    /// Several windows of one workload as one: their requests, errors, CPU and flushes added up,
    /// each window's send times shifted past the windows before it.
    pub fn concat(parts: Vec<Measured>) -> Measured {
        let mut all = Measured {
            cpu: Some(Duration::ZERO),
            server_cpu: Some(Duration::ZERO),
            ..Measured::default()
        };
        for part in parts {
            let offset = all.window.as_millis() as u32;
            all.samples
                .extend(part.samples.iter().map(|&(sent, us)| (sent + offset, us)));
            all.window += part.window;
            all.errors.add(&part.errors);
            all.cpu = all.cpu.zip(part.cpu).map(|(a, b)| a + b);
            all.server_cpu = all.server_cpu.zip(part.server_cpu).map(|(a, b)| a + b);
            all.flushes = match (all.flushes, part.flushes) {
                (Some(a), Some(b)) => Some(a.plus(&b)),
                (a, b) => a.or(b),
            };
        }
        all.samples.sort_unstable_by_key(|&(_, us)| us);
        all
    }

    /// The latency below which a share `p` (0..=1) of the requests completed.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.samples.len();
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n.max(1));
        let (_, us) = *self.samples.get(rank - 1)?;
        Some(Duration::from_micros(u64::from(us)))
    }
}

enum Failure {
    Status,
    Transport,
    Wrong,
}

/// Runs `scenario` against `addr` per `plan` and waits for every client to finish.
pub async fn run(addr: SocketAddr, plan: Plan, scenario: Arc<dyn Scenario>) -> Measured {
    let start = Instant::now() + plan.warmup;
    let end = start + plan.window;
    let host = HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("x"));
    let mut tasks = tokio::task::JoinSet::new();
    // Paced: each client every `clients / rate` seconds, the clients spread evenly over it.
    let pace = plan
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(plan.clients as f64 / r));
    let began = Instant::now();
    for client in 0..plan.clients {
        let (scenario, host) = (Arc::clone(&scenario), host.clone());
        let schedule = pace.map(|every| Schedule {
            next: began + every.mul_f64(client as f64 / plan.clients as f64),
            every,
        });
        tasks.spawn(drive(addr, host, client, scenario, (start, end), schedule));
    }
    let cpu = tokio::spawn(async move {
        let read = || {
            Some((
                crate::machine::process_cpu()?,
                crate::machine::harness_cpu(),
            ))
        };
        tokio::time::sleep_until(start.into()).await;
        let (before, harness_before) = read()?;
        tokio::time::sleep_until(end.into()).await;
        let (after, harness_after) = read()?;
        let process = after.saturating_sub(before);
        let harness = harness_after
            .zip(harness_before)
            .map(|(a, b)| a.saturating_sub(b));
        Some((process, harness.map(|h| process.saturating_sub(h))))
    });
    let mut measured = Measured {
        window: plan.window,
        ..Measured::default()
    };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((samples, errors)) => {
                measured.samples.extend(samples);
                measured.errors.add(&errors);
            }
            Err(e) => {
                eprintln!("a load-generator client panicked: {e}");
                measured.errors.transport += 1;
            }
        }
    }
    measured.samples.sort_unstable_by_key(|&(_, us)| us);
    let cpu = cpu.await.ok().flatten();
    measured.cpu = cpu.map(|(process, _)| process);
    measured.server_cpu = cpu.and_then(|(_, server)| server);
    measured
}

/// A paced client's send times.
struct Schedule {
    next: Instant,
    every: Duration,
}

/// One virtual client: reconnects after transport errors, stops starting requests at `end`.
/// Paced, it waits for each scheduled time (or sends at once when running late) and measures
/// from that time.
async fn drive(
    addr: SocketAddr,
    host: HeaderValue,
    client: usize,
    scenario: Arc<dyn Scenario>,
    (start, end): (Instant, Instant),
    mut schedule: Option<Schedule>,
) -> (Vec<(u32, u32)>, Errors) {
    let (mut samples, mut errors) = (Vec::new(), Errors::default());
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    // Paced end-to-end requests whose webhook was answered and whose reply is awaited.
    let mut replies = tokio::task::JoinSet::new();
    let mut seq = 0;
    while Instant::now() < end {
        let sender = match conn.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => conn.insert(s),
                Err(_) => {
                    errors.transport += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let sent = match schedule.as_mut() {
            Some(s) => {
                let at = s.next;
                s.next += s.every;
                if at >= end {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        let call = scenario.call(client, seq);
        seq += 1;
        let outcome = match exchange(sender, &host, call).await {
            Ok(Answered::Later(reply)) if schedule.is_some() => {
                replies.spawn(async move { (sent, effect(reply).await) });
                continue;
            }
            Ok(Answered::Later(reply)) => effect(reply).await,
            Ok(Answered::At(done)) => Ok(done),
            Err(e) => Err(e),
        };
        if let Err(Failure::Transport) = outcome {
            conn = None;
        }
        tally(outcome, sent, (start, end), &mut samples, &mut errors);
    }
    while let Some(waited) = replies.join_next().await {
        match waited {
            Ok((sent, outcome)) => tally(outcome, sent, (start, end), &mut samples, &mut errors),
            Err(_) => errors.wrong += 1,
        }
    }
    (samples, errors)
}

/// Counts one request: when it was sent and its latency from then, if it completed inside the
/// window, or its error.
fn tally(
    outcome: Result<Instant, Failure>,
    sent: Instant,
    (start, end): (Instant, Instant),
    samples: &mut Vec<(u32, u32)>,
    errors: &mut Errors,
) {
    match outcome {
        Ok(done) if done >= start && done <= end => {
            let us = done.saturating_duration_since(sent).as_micros();
            let at = sent.saturating_duration_since(start).as_millis();
            samples.push((
                u32::try_from(at).unwrap_or(u32::MAX),
                u32::try_from(us).unwrap_or(u32::MAX),
            ));
        }
        Ok(_) => {}
        Err(Failure::Status) => errors.non_2xx += 1,
        Err(Failure::Wrong) => errors.wrong += 1,
        Err(Failure::Transport) => errors.transport += 1,
    }
}

/// When the request's effect arrived: a successful reply at the fake Send API.
async fn effect(reply: oneshot::Receiver<Reply>) -> Result<Instant, Failure> {
    match tokio::time::timeout(EFFECT_TIMEOUT, reply).await {
        Ok(Ok(r)) if r.credited => Ok(r.at),
        _ => Err(Failure::Wrong),
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors surface on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}

/// How far a request got once its HTTP answer was in.
enum Answered {
    /// Complete, at this instant.
    At(Instant),
    /// The webhook was answered; the request completes when this reply arrives.
    Later(oneshot::Receiver<Reply>),
}

/// Sends one call and judges the answer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &HeaderValue,
    call: Call,
) -> Result<Answered, Failure> {
    sender.ready().await.map_err(|_| Failure::Transport)?;
    let mut request = Request::post(call.path)
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/json");
    for (name, value) in call.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(call.body))
        .map_err(|_| Failure::Wrong)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|_| Failure::Transport)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| Failure::Transport)?
        .to_bytes();
    if !status.is_success() {
        return Err(Failure::Status);
    }
    match call.expect {
        Expect::Success => Ok(Answered::At(Instant::now())),
        Expect::BodyContains(text) if contains(&body, text.as_bytes()) => {
            Ok(Answered::At(Instant::now()))
        }
        Expect::BodyContains(_) => Err(Failure::Wrong),
        Expect::Reply(reply) => Ok(Answered::Later(reply)),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_exact_ranks() {
        let m = Measured {
            window: Duration::from_secs(1),
            samples: (1..=100).map(|us| (0, us)).collect(),
            errors: Errors::default(),
            cpu: None,
            server_cpu: None,
            flushes: None,
        };
        let at = |p| m.percentile(p).unwrap().as_micros();
        assert_eq!((at(0.5), at(0.95), at(0.99), at(1.0)), (50, 95, 99, 100));
        assert_eq!(m.rate(), 100.0);
        assert!(Measured::default().percentile(0.5).is_none());
    }

    #[test]
    fn the_timeline_gives_each_slice_its_own_p99() {
        // 1 s window, 250 ms slices; the third slice holds a stall.
        let samples: Vec<(u32, u32)> = (0..1000u32)
            .map(|ms| {
                (
                    ms,
                    if (500..750).contains(&ms) {
                        40_000
                    } else {
                        2_000
                    },
                )
            })
            .collect();
        let m = Measured {
            window: Duration::from_secs(1),
            samples,
            errors: Errors::default(),
            cpu: None,
            server_cpu: None,
            flushes: None,
        };
        assert_eq!(
            m.p99_by_slice(Duration::from_millis(250)),
            [2.0, 2.0, 40.0, 2.0]
        );
    }

    #[test]
    fn windows_concatenated_add_up_and_keep_their_send_times_apart() {
        let flushes = |n: u64| {
            let mut f = loyalty_bot::store::FlushStats::default();
            f.counts[0] = n;
            f.counts[7] = 1;
            f
        };
        let part = |samples: Vec<(u32, u32)>, cpu_ms: u64, n: u64| Measured {
            window: Duration::from_millis(500),
            samples,
            errors: Errors {
                non_2xx: 1,
                transport: 0,
                wrong: 2,
            },
            cpu: Some(Duration::from_millis(cpu_ms)),
            server_cpu: Some(Duration::from_millis(cpu_ms / 2)),
            flushes: Some(flushes(n)),
        };
        let all = Measured::concat(vec![
            part(vec![(10, 3_000), (20, 1_000)], 100, 5),
            part(vec![(10, 2_000)], 50, 7),
        ]);
        assert_eq!(all.window, Duration::from_secs(1));
        assert_eq!(all.completed(), 3);
        assert_eq!(all.rate(), 3.0);
        assert_eq!(all.samples, [(20, 1_000), (510, 2_000), (10, 3_000)]);
        assert_eq!((all.errors.non_2xx, all.errors.wrong), (2, 4));
        assert_eq!(all.cpu, Some(Duration::from_millis(150)));
        assert_eq!(all.server_cpu, Some(Duration::from_millis(75)));
        let f = all.flushes.unwrap();
        assert_eq!((f.total(), f.at_least(100)), (14, 2));
        // One window without a CPU reading leaves the sum unknown, not too small.
        let unknown = Measured::concat(vec![
            part(vec![], 100, 0),
            Measured {
                cpu: None,
                server_cpu: None,
                ..part(vec![], 1, 0)
            },
        ]);
        assert_eq!((unknown.cpu, unknown.server_cpu), (None, None));
    }

    /// Answers every webhook at once; the scenario's reply arrives `REPLY_AFTER` later.
    struct SlowReplies;

    const REPLY_AFTER: Duration = Duration::from_millis(300);

    impl Scenario for SlowReplies {
        fn call(&self, _client: usize, _seq: u64) -> Call {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                tokio::time::sleep(REPLY_AFTER).await;
                let _ = tx.send(Reply {
                    at: Instant::now(),
                    credited: true,
                });
            });
            Call {
                path: "/",
                body: Bytes::from_static(b"{}"),
                headers: Vec::new(),
                expect: Expect::Reply(rx),
            }
        }
    }

    #[actix_web::test]
    async fn a_paced_end_to_end_request_frees_its_connection_at_the_answer() {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let server = HttpServer::new(|| {
            // Reads the body, as the fakes do: actix closes a connection whose body was not read.
            App::new().default_service(web::to(|_body: web::Bytes| async {
                HttpResponse::Ok().finish()
            }))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        // One connection, a send every 50 ms for 1 s. Holding the connection until each reply
        // (300 ms) would allow about 3 requests; sent on schedule, those whose reply lands in
        // the window (sent in its first 700 ms) count: about 14.
        let plan = Plan {
            clients: 1,
            warmup: Duration::ZERO,
            window: Duration::from_secs(1),
            rate: Some(20.0),
        };
        let measured = run(addr, plan, Arc::new(SlowReplies)).await;
        handle.stop(false).await;
        assert_eq!(measured.errors.total(), 0, "{:?}", measured.errors);
        assert!(
            measured.completed() >= 10,
            "{} requests completed",
            measured.completed()
        );
        let p50 = measured.percentile(0.5).unwrap();
        assert!(p50 >= REPLY_AFTER, "latency counts to the reply: {p50:?}");
    }
}
