//! The raw RabbitMQ ceiling on its own (run once by `loadtest/run-all` as part of its
//! `ceilings` point): publish → consume through one durable queue with chukan's guarantees,
//! printed as JSON. Talks only to the broker URL it is given (loopback in our runs).

use std::time::Duration;

use chukan_loadtest::echo::raw_echo;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Raw RabbitMQ publish → consume echo through lapin (messages/s)")]
struct Args {
    /// RabbitMQ URL with the vhost to use (a queue is declared there and deleted after).
    #[arg(long)]
    amqp: String,
    /// Length of the measurement, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let echo = raw_echo(&args.amqp, Duration::from_secs(args.seconds)).await?;
    println!("{}", serde_json::to_string_pretty(&echo)?);
    Ok(())
}
