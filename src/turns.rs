//! How many Messenger events are worked on at once. After a stall every customer has an event
//! waiting; letting all their lanes run together makes each event costlier and the backlog
//! drain slowly (`docs/benchmark.md`, Decisions: a bound on turns at once), so a lane takes a
//! place before it works. A lane that waits on something outside (the shop, Meta, the disk's
//! flush) for longer than a short grace gives its place up until the wait ends, so a hung shop
//! holds back only the customers whose turns are waiting on it, never everyone else.

use crate::shop::{CouponRequest, Shop, ShopError, ShopOrder};
use futures_util::future::BoxFuture;
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The places, shared by every lane.
#[derive(Clone)]
pub struct Turns {
    places: Option<Arc<Semaphore>>,
    grace: Duration,
}

struct Place {
    places: Arc<Semaphore>,
    grace: Duration,
    held: RefCell<Option<OwnedSemaphorePermit>>,
}

tokio::task_local! {
    static PLACE: Place;
}

impl Turns {
    /// `at_once` places (`0`: no bound); a wait longer than `grace` gives its place up.
    pub fn new(at_once: usize, grace: Duration) -> Self {
        Turns {
            places: (at_once > 0).then(|| Arc::new(Semaphore::new(at_once))),
            grace,
        }
    }

    /// Runs `work` once a place is free, holding it except while `work` is in a long
    /// [`waiting`].
    pub async fn take<F: Future>(&self, work: F) -> F::Output {
        let Some(places) = &self.places else {
            return work.await;
        };
        let permit = Arc::clone(places)
            .acquire_owned()
            .await
            .expect("the places are never closed");
        let place = Place {
            places: Arc::clone(places),
            grace: self.grace,
            held: RefCell::new(Some(permit)),
        };
        PLACE.scope(place, work).await
    }
}

/// Awaits `wait`, something outside this process (a network call, a flush). Inside
/// [`Turns::take`], a wait that lasts longer than the grace gives the place up and takes one
/// again when it ends; elsewhere it is just `wait.await`.
pub async fn waiting<F: Future>(wait: F) -> F::Output {
    let Ok(grace) = PLACE.try_with(|p| p.grace) else {
        return wait.await;
    };
    tokio::pin!(wait);
    if !grace.is_zero() {
        tokio::select! {
            biased;
            out = &mut wait => return out,
            () = tokio::time::sleep(grace) => {}
        }
    }
    let (places, given_up) = PLACE.with(|p| (Arc::clone(&p.places), p.held.borrow_mut().take()));
    // None to give up: a nested wait already did (it takes one again itself), or a wait that
    // panicked after giving it up left the rest of the turn to finish without one.
    let Some(permit) = given_up else {
        return wait.await;
    };
    drop(permit);
    let out = wait.await;
    let permit = places
        .acquire_owned()
        .await
        .expect("the places are never closed");
    PLACE.with(|p| *p.held.borrow_mut() = Some(permit));
    out
}

/// A shop whose calls are [`waiting`]s: a turn gives its place up while the shop is slow.
pub struct ShopWaits(pub Arc<dyn Shop>);

impl Shop for ShopWaits {
    fn find_order<'a>(
        &'a self,
        number: &'a crate::domain::OrderNumber,
        email: &'a crate::domain::Email,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        Box::pin(waiting(self.0.find_order(number, email)))
    }

    fn create_coupon<'a>(
        &'a self,
        coupon: &'a CouponRequest,
    ) -> BoxFuture<'a, Result<(), ShopError>> {
        Box::pin(waiting(self.0.create_coupon(coupon)))
    }

    fn order_by_id<'a>(
        &'a self,
        id: &'a crate::domain::OrderId,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        Box::pin(waiting(self.0.order_by_id(id)))
    }

    fn warm_up(&self) -> BoxFuture<'_, Result<(), ShopError>> {
        self.0.warm_up()
    }

    fn ids_are_numbers(&self) -> bool {
        self.0.ids_are_numbers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::{sleep, Instant};

    const MS: Duration = Duration::from_millis(1);

    fn free_places(turns: &Turns) -> usize {
        turns.places.as_ref().expect("bounded").available_permits()
    }

    /// Starts `work` as a turn in a task of its own and lets it take its place.
    async fn started<F>(turns: &Turns, work: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let turns = turns.clone();
        let task = tokio::spawn(async move { turns.take(work).await });
        tokio::task::yield_now().await;
        task
    }

    /// Runs `n` turns that each do `work_ms` of "work" (a sleep, not a wait) and returns the
    /// most that ran at once.
    async fn most_at_once(turns: &Turns, n: usize, work_ms: u64) -> usize {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (turns, now, most) = (turns.clone(), now.clone(), most.clone());
            all.spawn(async move {
                turns
                    .take(async {
                        let here = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(here, Ordering::SeqCst);
                        sleep(MS * work_ms as u32).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            });
        }
        while all.join_next().await.is_some() {}
        most.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_turns_work_at_once_than_the_places() {
        assert_eq!(most_at_once(&Turns::new(3, 5 * MS), 20, 10).await, 3);
        assert_eq!(most_at_once(&Turns::new(0, 5 * MS), 20, 10).await, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_wait_keeps_its_place() {
        let turns = Turns::new(1, 5 * MS);
        let first = started(&turns, async {
            waiting(sleep(2 * MS)).await;
            sleep(10 * MS).await;
        })
        .await;
        let since = Instant::now();
        turns.take(async {}).await;
        // The second turn had to wait for the whole first one: 2 + 10 ms.
        assert!(since.elapsed() >= 12 * MS, "{:?}", since.elapsed());
        first.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_gives_its_place_to_another_turn_and_takes_one_back() {
        let turns = Turns::new(1, 5 * MS);
        let hung = started(&turns, async {
            waiting(sleep(Duration::from_secs(5))).await;
            // Back at work: it holds the place again.
            sleep(10 * MS).await;
        })
        .await;
        let since = Instant::now();
        turns.take(async {}).await;
        let waited = since.elapsed();
        assert!(waited >= 5 * MS && waited < 10 * MS, "{waited:?}");
        // Let the hung turn's wait end and its work start; then a new turn waits for it.
        sleep(Duration::from_secs(5)).await;
        assert_eq!(free_places(&turns), 0);
        hung.await.unwrap();
        assert_eq!(free_places(&turns), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_grace_gives_the_place_up_for_every_wait_and_nested_waits_are_fine() {
        let turns = Turns::new(1, Duration::ZERO);
        let waiter = started(&turns, async {
            waiting(async { waiting(sleep(50 * MS)).await }).await;
        })
        .await;
        let since = Instant::now();
        turns.take(async {}).await;
        assert!(since.elapsed() < MS, "{:?}", since.elapsed());
        waiter.await.unwrap();
        assert_eq!(free_places(&turns), 1);
    }

    #[tokio::test]
    async fn outside_a_turn_a_wait_is_just_awaited() {
        assert_eq!(waiting(async { 7 }).await, 7);
    }
}
