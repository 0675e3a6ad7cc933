//! Points follow the order: a shop's webhook says an order changed, the program reads the
//! order again from the shop (the webhook is a trigger, the shop's answer the truth) and sets
//! the order's points to what its state earns now ([`crate::domain::order_changes`]). With
//! `program.auto_credit`, a paid order nobody claimed is credited to the member with its
//! email. Members hear of a change through [`OrderNotice`].

use super::{locks, Program, ProgramError};
use crate::domain::{
    points_for, MemberId, OrderId, OrderNumber, OrderState, Points, ReversalReason,
};
use crate::shop::{ShopError, ShopOrder};
use crate::store::{OrderStanding, SettleOutcome};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;

/// What a member is told about their order, when it changed without them asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderNews {
    /// A paid order was credited without a claim.
    AutoCredited {
        order: OrderNumber,
        points: Points,
        balance: Points,
    },
    /// The order earns less now (a partial refund, a change) or ended (refund, cancellation).
    Lowered {
        order: OrderNumber,
        taken: Points,
        ended: Option<ReversalReason>,
        balance: Points,
    },
    /// The order earns more now.
    Raised {
        order: OrderNumber,
        points: Points,
        balance: Points,
    },
}

/// Tells a member about [`OrderNews`] where their channel may (the 24-hour window). News
/// that cannot go out now waits for the member's next statement email, which lists the
/// order changes since the last one from the ledger.
pub trait OrderNotice: Send + Sync {
    fn tell(&self, member: MemberId, news: OrderNews) -> BoxFuture<'_, ()>;
}

/// Why an order change could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The shop could not be asked: the webhook should be delivered again.
    #[error(transparent)]
    Shop(#[from] ShopError),
    #[error(transparent)]
    Program(#[from] ProgramError),
}

/// What following an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The shop does not show the order (deleted, or older than the shop lets the app see)
    /// and the store had nothing to take back: nothing changed.
    NotVisible,
    /// The order is in another currency than the program's: it earns nothing here.
    OtherCurrency(String),
    Settled(SettleOutcome),
}

impl Followed {
    /// The `result` of a webhook's answer and the log.
    pub fn label(&self) -> &'static str {
        match self {
            Followed::NotVisible => "not_visible",
            Followed::OtherCurrency(_) => "other_currency",
            Followed::Settled(SettleOutcome::Unclaimed) => "unclaimed",
            Followed::Settled(SettleOutcome::EndedBeforeClaim { .. }) => "recorded_before_claim",
            Followed::Settled(SettleOutcome::Unchanged { .. }) => "unchanged",
            Followed::Settled(SettleOutcome::Changed { .. }) => "changed",
            Followed::Settled(SettleOutcome::AutoCredited { .. }) => "credited",
        }
    }
}

impl Program {
    /// Reads order `id` again from the shop and sets its points to what it earns now.
    /// `deleted`: the shop said the order was deleted, so an order it no longer shows is
    /// treated as cancelled.
    pub async fn follow_order(&self, id: &OrderId, deleted: bool) -> Result<Followed, FollowError> {
        // Deliveries about one order read and write in turn, so that the last to write read
        // last; a claim of the order's number keeps its read and write in one turn too.
        let _by_id = self.turns.take(locks::id_key(id.as_str())).await;
        let now_seen = self.shop.order_by_id(id).await?;
        let number = now_seen.as_ref().map(|o| o.number.as_str().to_owned());
        let _by_number = match number {
            Some(n) => Some(self.turns.take(locks::number_key(&n)).await),
            None => None,
        };
        let state = match now_seen {
            Some(order) => return Ok(self.follow_seen(order).await?),
            None => {
                let o = id.clone();
                let standing = self.durably(move |s| s.order_standing(&o)).await?;
                match (deleted, gone_order(id, standing)) {
                    (true, Some(state)) => state,
                    (false, Some(_)) => {
                        // Claimed here, invisible there: without `read_all_orders` Shopify
                        // shows 60 days of orders; the owner should know a change was missed.
                        tracing::warn!(order = %id, "a claimed order changed, but the shop no longer shows it; its points are left as they were");
                        return Ok(Followed::NotVisible);
                    }
                    (_, None) => return Ok(Followed::NotVisible),
                }
            }
        };
        Ok(self.settle(state, None).await?)
    }

    /// Sets the order's points to what `order`, as the shop sent it in a signed webhook, earns:
    /// for a shop that does not deliver again (WooCommerce) when it could not be read back.
    pub async fn follow_as_sent(&self, order: ShopOrder) -> Result<Followed, ProgramError> {
        let _by_id = self.turns.take(locks::id_key(order.id.as_str())).await;
        let _by_number = self
            .turns
            .take(locks::number_key(order.number.as_str()))
            .await;
        self.follow_seen(order).await
    }

    /// The order as the shop shows it now, followed (in the caller's turns).
    async fn follow_seen(&self, order: ShopOrder) -> Result<Followed, ProgramError> {
        if !order.currency.eq_ignore_ascii_case(&self.rules.currency) {
            return Ok(Followed::OtherCurrency(order.currency));
        }
        let credit_to = self.auto_credit_to(&order).await?;
        let state = self.state_of(&order);
        self.settle(state, credit_to).await
    }

    /// Whether a shop's webhook delivery was handled before.
    pub async fn delivery_seen(&self, source: &str, delivery: &str) -> Result<bool, ProgramError> {
        self.durably(|s| s.delivery_seen(source, delivery)).await
    }

    /// Records a shop's webhook delivery as handled.
    pub async fn record_delivery(&self, source: &str, delivery: &str) -> Result<(), ProgramError> {
        self.durably(|s| s.record_delivery(source, delivery, self.clock.now()))
            .await
    }

    /// The generic contract's partial refund (`refunded`: all refunded of the order so far).
    /// Like Shopify's and WooCommerce's webhooks it is a trigger: the shop's verify endpoint is
    /// asked for the order as it is now, and the order earns on its net total. Where the shop
    /// no longer shows it, the total kept at the claim less `refunded` counts. A partial
    /// refund never raises what the order stands at, so an older delivery arriving late gives
    /// nothing back.
    pub async fn refund_in_part(
        &self,
        number: OrderNumber,
        refunded: Decimal,
    ) -> Result<Followed, FollowError> {
        let id = OrderId::from(&number);
        let _turn = self.turns.take(locks::number_key(number.as_str())).await;
        let o = id.clone();
        let standing = self.durably(move |s| s.order_standing(&o)).await?;
        let (member, standing) = match standing {
            Some(s) if s.reversal.is_some() => {
                let member = s.claim.map(|c| c.0);
                return Ok(Followed::Settled(SettleOutcome::Unchanged { member }));
            }
            Some(s) => match s.claim {
                Some((member, _)) => (member, s),
                None => return Ok(Followed::Settled(SettleOutcome::Unclaimed)),
            },
            // Unclaimed: a claim asks the shop, whose total is net of the refund.
            None => return Ok(Followed::Settled(SettleOutcome::Unclaimed)),
        };
        let Some(account) = self.account_of(member).await? else {
            return Ok(Followed::Settled(SettleOutcome::Unchanged {
                member: Some(member),
            }));
        };
        let shown = self.shop.find_order(&number, &account.member.email).await?;
        let shown = shown.filter(|o| o.number.as_str().eq_ignore_ascii_case(number.as_str()));
        let mut state = match (shown, standing.total) {
            (Some(order), _) => self.state_of(&order),
            (None, Some(total)) => {
                let left = (total - refunded).max(Decimal::ZERO);
                OrderState {
                    id,
                    number,
                    total: left,
                    earns: points_for(left, self.rules.points_per_currency_unit),
                    ended: left.is_zero().then_some(ReversalReason::Refunded),
                }
            }
            (None, None) => {
                tracing::warn!(order = %number, "a partial refund of an order the shop no longer shows, claimed before totals were kept: left as it was");
                let member = Some(member);
                return Ok(Followed::Settled(SettleOutcome::Unchanged { member }));
            }
        };
        if state.ended.is_none() {
            state.earns = state.earns.min(standing.earned);
        }
        Ok(self.settle(state, None).await?)
    }

    fn state_of(&self, order: &ShopOrder) -> OrderState {
        OrderState::of(
            order.id.clone(),
            order.number.clone(),
            &order.status,
            order.total,
            self.rules.points_per_currency_unit,
        )
    }

    /// The member a paid, unclaimed order goes to without a claim: with `program.auto_credit`
    /// on, the member with the order's email. Members exist only once their address is
    /// verified where verification is on, so a member is verified.
    async fn auto_credit_to(&self, order: &ShopOrder) -> Result<Option<MemberId>, ProgramError> {
        if !self.rules.auto_credit || !order.status.earns() {
            return Ok(None);
        }
        let Some(email) = order.email.as_ref() else {
            return Ok(None);
        };
        Ok(self.member_by_email(email).await?.map(|a| a.member.id))
    }

    async fn settle(
        &self,
        state: OrderState,
        credit_to: Option<MemberId>,
    ) -> Result<Followed, ProgramError> {
        let st = state.clone();
        let out = self
            .durably(move |s| s.settle_order(&st, credit_to, self.clock.now()))
            .await?;
        if let Some((member, news)) = news_of(&state, &out) {
            if let SettleOutcome::AutoCredited {
                balance, points, ..
            } = &out
            {
                self.metrics.auto_credited(points.0);
                let before = Points(balance.0.saturating_sub(points.0));
                self.remind_if_affordable(member, before, *balance).await;
            }
            self.tell(member, news);
        }
        Ok(Followed::Settled(out))
    }

    /// Tells `member` the `news` on its own task: the change is on disk, and the shop's
    /// webhook need not wait for the chat (Shopify gives up after 5 s).
    pub(crate) fn tell(&self, member: MemberId, news: OrderNews) {
        if let Some(notice) = self.notice.get().cloned() {
            tokio::spawn(async move { notice.tell(member, news).await });
        }
    }
}

/// What an order the shop deleted stands at: cancelled, if the store has it claimed and not
/// ended; `None` when there is nothing to take back.
fn gone_order(id: &OrderId, standing: Option<OrderStanding>) -> Option<OrderState> {
    let standing = standing?;
    if standing.claim.is_none() || standing.reversal.is_some() {
        return None;
    }
    let number = match standing.number {
        Some(n) => n,
        None => OrderNumber::parse(id.as_str()).ok()?,
    };
    Some(OrderState {
        id: id.clone(),
        number,
        total: Decimal::ZERO,
        earns: Points::ZERO,
        ended: Some(ReversalReason::Cancelled),
    })
}

/// The news for the member an outcome changed, if it changed anyone's points.
fn news_of(state: &OrderState, out: &SettleOutcome) -> Option<(MemberId, OrderNews)> {
    let order = state.number.clone();
    Some(match *out {
        SettleOutcome::AutoCredited {
            member,
            points,
            balance,
        } => (
            member,
            OrderNews::AutoCredited {
                order,
                points,
                balance,
            },
        ),
        SettleOutcome::Changed {
            member,
            taken,
            shortfall,
            credited,
            balance,
            ref ended,
            ..
        } => match credited > Points::ZERO {
            true => (
                member,
                OrderNews::Raised {
                    order,
                    points: credited,
                    balance,
                },
            ),
            false if taken > Points::ZERO || shortfall > Points::ZERO || ended.is_some() => (
                member,
                OrderNews::Lowered {
                    order,
                    taken,
                    ended: ended.as_ref().map(|r| r.reason),
                    balance,
                },
            ),
            false => return None,
        },
        _ => return None,
    })
}
