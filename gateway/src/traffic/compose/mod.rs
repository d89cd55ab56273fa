//! Composed routes: one request, several upstream calls made concurrently,
//! one JSON object keyed by part name. A part either names its upstream and
//! path (`parts`), or the route fans out to every target of one upstream
//! (`fan_out`, parts named after the targets).
//!
//! - [`table`]: the configuration, resolved and checked;
//! - [`answer`]: calling the parts (through the one upstream client) and
//!   the outcome rule.

pub mod answer;
pub mod table;
