from django.core.management.base import BaseCommand

from devtools.simulator import Fleet, parse_job_seconds


class Command(BaseCommand):
    help = "Run a demo fleet of simulated workers that report builds through the HTTP API."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--token", required=True, help="a worker token (create_token NAME --queue builds.linux)")
        parser.add_argument("--build-token", default=None,
                            help="a build token of the demo repositories' owners; default: --token")
        parser.add_argument("--operator-token", default=None,
                            help="a staff user's personal token: the fleet then shows staged rollouts, a good "
                                 "version completing and a bad one halted at its canary")
        parser.add_argument("--rollout-soak", type=float, default=1.0, help="minutes each demo rollout stage soaks")
        parser.add_argument("--rate", type=float, default=6.0, help="new builds per minute")
        parser.add_argument("--workers", type=int, default=4)
        parser.add_argument("--builds", type=int, default=None, help="stop after this many builds")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--heartbeat-interval", type=float, default=15.0, help="seconds between heartbeats")
        parser.add_argument("--problem-every", type=float, default=20.0,
                            help="minutes between demo problems (bad version, missing image, silent host); 0: none")
        parser.add_argument("--job-seconds", type=parse_job_seconds, default="120-300", metavar="MIN-MAX",
                            help="how long the long demo jobs stream their logs, e.g. 120-300 or 60; 0: none. "
                                 "The first job is long, then about one in five.")

    def handle(self, *args, url, token, build_token, operator_token, rollout_soak, rate, workers, builds, seed,
               heartbeat_interval, problem_every, job_seconds, **options):
        fleet = Fleet(url, token, rate=rate, workers=workers, seed=seed, heartbeat_interval=heartbeat_interval,
                      problem_every=problem_every * 60, build_token=build_token, job_seconds=job_seconds,
                      operator_token=operator_token, rollout_soak=rollout_soak)
        try:
            fleet.run(builds=builds)
        except KeyboardInterrupt:
            fleet.stopping.set()
