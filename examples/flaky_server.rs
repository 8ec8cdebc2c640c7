//! The testkit's flaky server as a program: HTTP/1.1, HTTP/2 and gRPC on one port of
//! 127.0.0.1, misbehaving as its flags say, until Ctrl-C (or `--for-secs`).
//!
//! ```sh
//! cargo run --example flaky_server --features testkit -- --error-rate 0.3 --latency-ms 50
//! curl -i http://127.0.0.1:PORT/anything
//! ```

use std::process::ExitCode;
use std::time::Duration;

use palisade::testkit::{Fault, FlakyServer};

const HELP: &str = "\
flaky_server: an HTTP/1.1, HTTP/2 and gRPC server on 127.0.0.1 that fails on demand

USAGE:
    cargo run --example flaky_server --features testkit -- [OPTIONS]

OPTIONS:
    --port N          port to listen on (default 0: any free port)
    --error-rate P    answer 503 to this fraction of requests, 0.0 to 1.0 (default 0)
    --latency-ms N    wait N ms before every response head (default 0)
    --hang            read every request and never answer
    --seed N          seed of the random choices (default: the testkit's fixed seed)
    --for-secs N      exit by itself after N seconds (default: run until Ctrl-C)
    -h, --help        print this help

gRPC clients call palisade.testkit.Echo/Say (see palisade::testkit::grpc).";

#[derive(Debug, Default)]
struct Options {
    port: u16,
    error_rate: f64,
    latency_ms: u64,
    hang: bool,
    seed: Option<u64>,
    for_secs: Option<u64>,
}

fn value<T: std::str::FromStr>(flag: &str, raw: Option<String>) -> Result<T, String> {
    let raw = raw.ok_or_else(|| format!("{flag} needs a value"))?;
    raw.parse()
        .map_err(|_| format!("{flag}: cannot read {raw:?}"))
}

/// `Ok(None)`: help was asked for.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--flag=value` as well as `--flag value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut next = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => options.port = value(&flag, next())?,
            "--error-rate" => {
                let rate: f64 = value(&flag, next())?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(format!("--error-rate must be within 0.0..=1.0, got {rate}"));
                }
                options.error_rate = rate;
            }
            "--latency-ms" => options.latency_ms = value(&flag, next())?,
            "--hang" => options.hang = true,
            "--seed" => options.seed = Some(value(&flag, next())?),
            "--for-secs" => options.for_secs = Some(value(&flag, next())?),
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
    }
    Ok(Some(options))
}

fn fault(options: &Options) -> Fault {
    let mut fault = if options.hang {
        Fault::hang()
    } else {
        Fault::error_rate(503, options.error_rate)
    };
    fault = fault.latency(Duration::from_millis(options.latency_ms));
    if let Some(seed) = options.seed {
        fault = fault.seed(seed);
    }
    fault
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("flaky_server: {message}");
            return ExitCode::from(2);
        }
    };
    let server = match FlakyServer::builder()
        .port(options.port)
        .fault(fault(&options))
        .start()
        .await
    {
        Ok(server) => server,
        Err(err) => {
            eprintln!(
                "flaky_server: cannot listen on 127.0.0.1:{}: {err}",
                options.port
            );
            return ExitCode::FAILURE;
        }
    };
    println!("flaky_server listening on {}", server.url());
    println!("fault: {:?}", server.fault());

    let run_for = async {
        match options.for_secs {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("interrupted"),
        () = run_for => {}
    }
    let stats = server.stats();
    println!(
        "served {} requests ({} HTTP, {} gRPC) on {} connections",
        stats.requests, stats.http_requests, stats.grpc_requests, stats.connections_accepted
    );
    server.shutdown().await;
    ExitCode::SUCCESS
}
