//! The reward catalogue: what points buy, what a balance affords now, and what comes next.

use super::Points;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub id: String,
    pub title: String,
    pub points: Points,
    pub product_ids: Vec<String>,
    pub checkout_url: String,
    /// What the reward is worth in the program's currency (`[[rewards]] value`), for the
    /// statement's "won so far"; `None` when the owner did not say.
    pub value: Option<rust_decimal::Decimal>,
    /// What the coupon takes off the reward's products (`[[rewards]] discount`).
    pub discount: Discount,
}

/// What a reward's coupon takes off its products. The default, 100 %, makes them free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Discount {
    /// A percentage off each of the reward's products, `0 < p <= 100`.
    Percentage(rust_decimal::Decimal),
    /// A fixed amount off each of the reward's products, in the program's currency, `> 0`.
    Amount(rust_decimal::Decimal),
}

impl Default for Discount {
    fn default() -> Self {
        Discount::Percentage(rust_decimal::Decimal::ONE_HUNDRED)
    }
}

/// Rewards ordered by cost, cheapest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    rewards: Vec<Reward>,
}

impl Catalogue {
    pub fn new(mut rewards: Vec<Reward>) -> Self {
        rewards.sort_by(|a, b| a.points.cmp(&b.points).then_with(|| a.id.cmp(&b.id)));
        Catalogue { rewards }
    }

    pub fn all(&self) -> &[Reward] {
        &self.rewards
    }

    pub fn get(&self, id: &str) -> Option<&Reward> {
        self.rewards
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(id.trim()))
    }

    pub fn cheapest(&self) -> Option<&Reward> {
        self.rewards.first()
    }

    pub fn affordable(&self, balance: Points) -> impl Iterator<Item = &Reward> {
        self.rewards.iter().filter(move |r| r.points <= balance)
    }

    /// The cheapest reward the balance does not reach yet, with the points still missing.
    pub fn next_goal(&self, balance: Points) -> Option<(&Reward, Points)> {
        self.rewards
            .iter()
            .find(|r| r.points > balance)
            .map(|r| (r, balance.gap_to(r.points)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reward(id: &str, points: u64) -> Reward {
        Reward {
            id: id.into(),
            title: id.into(),
            points: Points(points),
            product_ids: vec![],
            checkout_url: String::new(),
            value: None,
            discount: Default::default(),
        }
    }

    #[test]
    fn affordable_and_next_goal_follow_the_balance() {
        let c = Catalogue::new(vec![reward("bag", 500), reward("mug", 200)]);
        assert_eq!(c.cheapest().unwrap().id, "mug");
        assert_eq!(c.affordable(Points(199)).count(), 0);
        assert_eq!(
            c.next_goal(Points(150)).map(|(r, g)| (r.id.as_str(), g)),
            Some(("mug", Points(50)))
        );
        let now: Vec<_> = c.affordable(Points(200)).map(|r| r.id.as_str()).collect();
        assert_eq!(now, ["mug"]);
        assert_eq!(
            c.next_goal(Points(200)).map(|(r, g)| (r.id.as_str(), g)),
            Some(("bag", Points(300)))
        );
        assert!(c.next_goal(Points(900)).is_none());
    }
}
