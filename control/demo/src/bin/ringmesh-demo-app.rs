//! `ringmesh-demo-app`: the sample service of `ringmesh demo`
//! ([`ringmesh_demo::app`]).
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    std::process::exit(ringmesh_demo::app::main(
        ringmesh_demo::app::AppArgs::parse(),
    ));
}
