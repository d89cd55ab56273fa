//! sea-orm entities of the orders schema (see `migrations::orders`).

pub mod order;
