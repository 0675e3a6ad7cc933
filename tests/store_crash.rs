//! `kill -9` in the middle of concurrent writes loses nothing the store acknowledged.
//!
//! The test runs itself a second time as a child process (marked by an environment variable).
//! The child writes from several threads and prints one line per call that returned `Ok`; the
//! parent kills it with SIGKILL mid-stream, reopens the database and checks every acknowledged
//! write is there. Without the group-commit wait, sled would still hold them in memory buffers.
//! A second test kills the child while it starts, at the moment sled writes its snapshot.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use chrono::{Duration, Utc};
use loyalty_bot::domain::{
    Channel, ChatIdentity, CouponCode, Email, OrderNumber, OrderStatus, Points, Profile,
    ReversalReason, Reward, VerifiedOrder,
};
use loyalty_bot::store::{
    ClaimOutcome, EventQueue, InboundEvent, JoinOutcome, LoyaltyStore, NewMember, RedeemOutcome,
    SledStore,
};

const CHILD_DIR: &str = "LOYALTY_STORE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_writes_survive_kill_9";
const ACKS_BEFORE_KILL: usize = 120;

fn open(path: &std::path::Path) -> SledStore {
    SledStore::open(path, 8 << 20).unwrap()
}

fn identity(psid: &str) -> ChatIdentity {
    ChatIdentity::new(Channel::Messenger, psid).unwrap()
}

/// The child: writes until killed, printing `ACK <kind> <key>` after each durable write.
fn write_until_killed(path: &str) {
    let store = Arc::new(open(std::path::Path::new(path)));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0.. {
                    one_round(&store, &format!("t{t}-{i}"));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// A new member named by `tag` (identity and email), with the signup bonus.
fn new_member(tag: &str) -> NewMember {
    NewMember {
        identity: identity(tag),
        email: Email::parse(&format!("{tag}@example.com")).unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    }
}

fn one_round(store: &SledStore, tag: &str) {
    let now = Utc::now();
    let JoinOutcome::Joined(account) = store.join(new_member(tag), now).unwrap() else {
        panic!("fresh identity did not join");
    };
    println!("ACK join {tag}");
    let order = VerifiedOrder {
        id: loyalty_bot::domain::OrderId::from(&OrderNumber::parse(&format!("{tag}9")).unwrap()),
        number: OrderNumber::parse(&format!("{tag}9")).unwrap(),
        email: account.member.email.clone(),
        total: "10".parse().unwrap(),
        currency: "EUR".into(),
        status: OrderStatus::Paid,
    };
    let claimed = store
        .claim_order(account.member.id, &order, Points(10), now)
        .unwrap();
    assert!(matches!(claimed, ClaimOutcome::Credited { .. }));
    println!("ACK claim {tag}9");
    let reward = Reward {
        id: "mug".into(),
        title: "Mug".into(),
        points: Points(30),
        product_ids: vec![],
        checkout_url: "https://shop.example/".into(),
        value: None,
        discount: Default::default(),
    };
    let code = CouponCode::generate("mug");
    let out = store.redeem_reward(
        account.member.id,
        &reward,
        code,
        now + Duration::days(30),
        now,
        None,
    );
    let RedeemOutcome::Reserved { coupon, .. } = out.unwrap() else {
        panic!("60 points did not buy a 30-point reward");
    };
    println!("ACK coupon {}", coupon.code);
    store
        .reverse_order(&order.id, ReversalReason::Refunded, now)
        .unwrap();
    println!("ACK reversal {tag}9");
    let event = InboundEvent {
        key: format!("mid-{tag}"),
        sender: tag.into(),
        timestamp_ms: 1,
        payload: serde_json::json!({}).into(),
    };
    store.record_inbound(vec![event]).unwrap();
    println!("ACK inbound mid-{tag}");
}

/// Kills the child on every exit path, so a failing assertion cannot leave it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Ok(path) = std::env::var(CHILD_DIR) {
        return write_until_killed(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let acks: Vec<String> = (&mut stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
        .take(ACKS_BEFORE_KILL)
        .collect();
    // SIGKILL and reap, then close the pipe: closed before the kill, the child's next
    // `println!` could fail and panic, and the unwinding would close its store cleanly, which
    // is not a crash.
    drop(child);
    drop(stdout);
    assert_eq!(acks.len(), ACKS_BEFORE_KILL, "the child stopped early");

    let store = open(dir.path());
    for ack in &acks {
        let (kind, key) = ack.split_once(' ').unwrap();
        match kind {
            "join" => assert!(
                store.member_by_identity(&identity(key)).unwrap().is_some(),
                "{ack}"
            ),
            "claim" => {
                let number = OrderNumber::parse(key).unwrap();
                assert!(
                    store.order_claim(&(&number).into()).unwrap().is_some(),
                    "{ack}"
                );
            }
            "reversal" => {
                let number = OrderNumber::parse(key).unwrap();
                assert!(
                    store.order_reversal(&(&number).into()).unwrap().is_some(),
                    "{ack}"
                );
            }
            "coupon" => {
                let code = CouponCode::from_stored(key.into());
                assert!(store.coupon(&code).unwrap().is_some(), "{ack}");
            }
            "inbound" => {
                let pending = store.pending_inbound().unwrap();
                assert!(pending.iter().any(|e| e.key == key), "{ack}");
            }
            other => panic!("unknown ack {other}"),
        }
    }
    for account in store.members().unwrap() {
        let sum: i64 = store
            .ledger(account.member.id)
            .unwrap()
            .iter()
            .map(|e| e.points)
            .sum();
        assert_eq!(
            sum,
            i64::try_from(account.balance.0).unwrap(),
            "member {}",
            account.member.id
        );
    }
    let members = store.members().unwrap();
    let totals = store.totals().unwrap();
    let sum: u64 = members.iter().map(|a| a.balance.0).sum();
    assert_eq!(
        (totals.members, totals.points),
        (members.len() as u64, sum),
        "the totals record matches the members after kill -9"
    );
}

const START_CHILD_DIR: &str = "LOYALTY_STORE_START_CRASH_CHILD_DIR";
const START_TEST_NAME: &str = "a_start_killed_while_writing_its_snapshot_leaves_a_store_that_opens";
/// Kills that land while a snapshot is being written, for the start test to pass.
const SNAPSHOT_KILLS: usize = 4;

/// The start test's child: opens the store, joins one member, closes it, and again. Each open
/// finds the last one's join in the log past its snapshot, so each writes a new snapshot.
fn restart_until_killed(path: &str) {
    for i in 0.. {
        let store = open(std::path::Path::new(path));
        let tag = format!("restart-{}-{i}", std::process::id());
        assert!(matches!(
            store.join(new_member(&tag), Utc::now()).unwrap(),
            JoinOutcome::Joined(_)
        ));
        println!("ACK join {tag}");
        drop(store);
    }
}

/// Snapshot files being written: sled writes `snap.<lsn>.generating`, syncs it, renames it.
fn snapshots_being_written(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".generating"))
                .count()
        })
        .unwrap_or(0)
}

/// A `kill -9` (or power loss) while a start writes sled's snapshot leaves the half-written
/// file behind; the registry sled then refused every later open (`Corruption`; upstream
/// #1527), which loses the whole store to a crash. The child restarts over and over and is
/// killed the moment a snapshot file being written appears.
#[test]
fn a_start_killed_while_writing_its_snapshot_leaves_a_store_that_opens() {
    if let Ok(path) = std::env::var(START_CHILD_DIR) {
        return restart_until_killed(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    {
        // Enough pages that writing the snapshot takes a while to catch.
        let store = open(dir.path());
        let (done, _mark) = loyalty_bot::store::durability::deferred(|| {
            for i in 0..20_000 {
                store.join(new_member(&format!("filled-{i}")), Utc::now())?;
            }
            Ok::<_, loyalty_bot::store::StoreError>(())
        });
        done.unwrap();
        store.flush_now().unwrap();
    }
    let mut acks = Vec::new();
    let mut caught = 0;
    for attempt in 0..50 {
        if caught == SNAPSHOT_KILLS {
            break;
        }
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                START_TEST_NAME,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(START_CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK join ").map(str::to_owned))
                .collect::<Vec<_>>()
        });
        let waiting = std::time::Instant::now();
        // Yielding, not sleeping: the file lives for a millisecond or so. The child has the
        // other CPU, and a child that died (a panic) ends the wait.
        while snapshots_being_written(dir.path()) == 0
            && waiting.elapsed() < std::time::Duration::from_secs(10)
            && matches!(child.0.try_wait(), Ok(None))
        {
            std::thread::yield_now();
        }
        drop(child);
        acks.extend(reader.join().unwrap());
        if snapshots_being_written(dir.path()) > 0 {
            caught += 1;
        }
        let store = SledStore::open(dir.path(), 8 << 20).unwrap_or_else(|e| {
            panic!("kill {attempt} ({caught} during a snapshot) left a store that won't open: {e}")
        });
        for tag in &acks {
            assert!(
                store.member_by_identity(&identity(tag)).unwrap().is_some(),
                "member {tag}, acknowledged before kill {attempt}"
            );
        }
        assert_eq!(
            snapshots_being_written(dir.path()),
            0,
            "the open removed the leftover"
        );
    }
    assert_eq!(
        caught, SNAPSHOT_KILLS,
        "kills landed while a snapshot was written"
    );
    // A join made durable just before its kill is there without its ACK line.
    let store = open(dir.path());
    assert!(store.members().unwrap().len() >= 20_000 + acks.len());
}
