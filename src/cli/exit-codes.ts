/**
 * The exit codes of every bitprep command (README: Runs and failures). Scripts and schedulers
 * branch on them, so they mean the same thing everywhere.
 */
export const EXIT = {
  /** Every planned (or selected) unit is done and holds what the config asked for. */
  OK: 0,
  /** Some unit failed or was left undone (an outage stopped the run, a unit was dead-lettered): rerun to finish. */
  UNITS_FAILED: 1,
  /** Refused before any work: a usage error, a config problem, a changed fixed setting, an output held by another run. */
  USAGE: 2,
  /** Interrupted (SIGINT/SIGTERM): running units stopped and stay undone; rerun to finish. */
  INTERRUPTED: 130,
} as const;
