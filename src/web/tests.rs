//! Tests of the dashboard server against labs of real stores.
