//! The attribute macros as users see them: SPEC's examples written with the macros
//! run like their builder versions and produce equal definitions; every option maps
//! to the builder call it stands for; methods of every shape run; workflows register
//! themselves.

mod behaviour;
mod options;
mod registration;
mod signals;
mod spec;
mod typed;
