//! The WooCommerce shop (`shop.kind = "woocommerce"`) against `FakeWoo` over a real socket.
//! `claims` and `coupons` drive the real application through the ManyChat endpoints as a
//! customer would: the exact REST requests we send (paths, Basic auth, queries, coupon bodies),
//! what each order state earns, and that a broken shop or a refused coupon loses nothing.
//! `adapter`: the adapter alone. `startup`: the real binary's checks of the settings.

mod common;

#[path = "woocommerce/adapter.rs"]
mod adapter;
#[path = "woocommerce/claims.rs"]
mod claims;
#[path = "woocommerce/coupons.rs"]
mod coupons;
#[path = "woocommerce/harness.rs"]
mod harness;
#[path = "woocommerce/startup.rs"]
mod startup;
#[path = "woocommerce/webhooks.rs"]
mod webhooks;
