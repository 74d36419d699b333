//! Attribute macros of sagaflow. Use them through the `sagaflow` crate.
