// The operator's help text, apart from the code it describes, so `coffer help`
// does not load the Kubernetes client or cdk8s.
export const OPERATOR_HELP = `Usage: coffer operator <command> [options]

The VaultCluster operator.

Commands:
  run [options]     run the controller (the default when no command is given;
                    'coffer operator run --help' lists the options)
  render -f FILE    print the manifests the operator creates for the VaultClusters
                    in FILE, without a cluster (other kinds in FILE, such as a
                    Namespace, are skipped; FILE '-' reads stdin)

Run 'coffer operator <command> --help' for details. An unknown command or
option exits 2.`;
