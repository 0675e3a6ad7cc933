//! The command line: `--seconds`, `--connections`, `--smoke`, and the plan derived from them.

use crate::load::Plan;
use std::time::Duration;

pub const USAGE: &str = "\
usage: loyalty-bench [--seconds N] [--connections C] [--rate R] [--members N] [--only W[,W...]]
                     [--smoke]

  --seconds N       measured seconds per workload (default 10; 1 with --smoke)
  --connections C   concurrent closed-loop connections (default 64; 4 with --smoke)
  --rate R          also run the Messenger and ManyChat claims paced (open loop) at R
                    requests/s over the same connections, latency counted from each request's
                    scheduled time (default 3000; 50 with --smoke; 0 skips the paced runs)
  --members N       fill the store with N members before the service starts, and report
                    bytes per member, cold start time and memory (a new process)
  --only W,...      run only these workloads: bare, held, intake, e2e, claim, redeem,
                    segments, mail (the bare ceiling always runs: every ratio needs it);
                    mail runs on a store of its own, of --members N members (default 28000)
  --smoke           a short run of every workload that fails (exit 1) on any error or
                    on zero throughput; for CI";

#[derive(Debug, Clone)]
pub struct Options {
    pub seconds: f64,
    pub connections: usize,
    pub smoke: bool,
    /// `None`: every workload.
    pub only: Option<Vec<Workload>>,
    /// Members to fill the store with before the service starts.
    pub members: Option<u64>,
    /// Requests per second of the paced claim runs; `None`: no paced runs.
    pub rate: Option<f64>,
}

/// The workloads `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Bare,
    Held,
    Intake,
    EndToEnd,
    Claim,
    Redeem,
    /// A points-range segment exported as CSV over HTTP.
    Segments,
    /// Member email: the due set, statements rendered, and delivered over SMTP.
    Mail,
}

impl Workload {
    fn parse(name: &str) -> Result<Workload, String> {
        Ok(match name {
            "bare" => Workload::Bare,
            "held" => Workload::Held,
            "intake" => Workload::Intake,
            "e2e" => Workload::EndToEnd,
            "claim" => Workload::Claim,
            "redeem" => Workload::Redeem,
            "segments" => Workload::Segments,
            "mail" => Workload::Mail,
            other => return Err(format!("unknown workload {other:?} in --only")),
        })
    }
}

impl Options {
    /// `Ok(None)` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
        let (mut seconds, mut connections, mut smoke, mut only) = (None, None, false, None);
        let (mut members, mut rate) = (None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seconds" => seconds = Some(number::<f64>(&arg, args.next())?),
                "--connections" => connections = Some(number::<usize>(&arg, args.next())?),
                "--smoke" => smoke = true,
                "--members" => members = Some(number::<u64>(&arg, args.next())?),
                "--rate" => rate = Some(number::<f64>(&arg, args.next())?),
                "--only" => {
                    let list = args.next().ok_or("--only needs a list of workloads")?;
                    only = Some(
                        list.split(',')
                            .map(Workload::parse)
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let seconds = seconds.unwrap_or(if smoke { 1.0 } else { 10.0 });
        let connections = connections.unwrap_or(if smoke { 4 } else { 64 });
        if !(seconds > 0.0 && seconds <= 600.0) {
            return Err("--seconds must be between 0 and 600".into());
        }
        if connections == 0 || connections > 4096 {
            return Err("--connections must be between 1 and 4096".into());
        }
        let rate = rate.unwrap_or(if smoke { 50.0 } else { 3000.0 });
        if !(0.0..=1_000_000.0).contains(&rate) {
            return Err("--rate must be between 0 and 1000000".into());
        }
        Ok(Some(Options {
            seconds,
            connections,
            smoke,
            only,
            members,
            rate: (rate > 0.0).then_some(rate),
        }))
    }

    /// Whether `w` is to run.
    pub fn runs(&self, w: Workload) -> bool {
        w == Workload::Bare || self.only.as_ref().is_none_or(|o| o.contains(&w))
    }

    /// `--only mail`: the member-email row alone, which needs neither the service nor the
    /// `--members` fill of the other rows.
    pub fn mail_only(&self) -> bool {
        self.only.as_deref() == Some(&[Workload::Mail][..])
    }

    /// Each workload: a warm-up (a tenth of the window, at most 1 s) that is not measured,
    /// then the window.
    pub fn plan(&self) -> Plan {
        let window = Duration::from_secs_f64(self.seconds);
        Plan {
            clients: self.connections,
            warmup: (window / 10).min(Duration::from_secs(1)),
            window,
            rate: None,
        }
    }

    /// How many members a workload cycles through: enough that no two connections ever
    /// claim for the same member at once, and a realistic spread of keys.
    pub fn members(&self, full_run: usize) -> usize {
        let at_least = self.connections * 2;
        if self.smoke {
            at_least
        } else {
            full_run.max(at_least)
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag} needs a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn smoke_shortens_the_run_unless_told_otherwise() {
        let o = parse(&["--smoke"]).unwrap().unwrap();
        assert_eq!((o.seconds, o.connections, o.smoke), (1.0, 4, true));
        let o = parse(&["--smoke", "--connections", "8"]).unwrap().unwrap();
        assert_eq!(o.connections, 8);
        let o = parse(&[]).unwrap().unwrap();
        assert_eq!((o.seconds, o.connections, o.smoke), (10.0, 64, false));
        assert_eq!(o.rate, Some(3000.0));
        assert_eq!(parse(&["--rate", "0"]).unwrap().unwrap().rate, None);
    }

    #[test]
    fn bad_arguments_are_refused() {
        for args in [
            &["--seconds"][..],
            &["--seconds", "x"],
            &["--seconds", "0"],
            &["--connections", "0"],
            &["--rate", "-1"],
            &["--fast"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn only_mail_needs_no_service() {
        let o = parse(&["--only", "mail"]).unwrap().unwrap();
        assert!(o.mail_only() && o.runs(Workload::Mail));
        let o = parse(&["--only", "mail,e2e"]).unwrap().unwrap();
        assert!(!o.mail_only() && o.runs(Workload::Mail));
        assert!(!parse(&[]).unwrap().unwrap().mail_only());
    }
}
