# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mailrestore_global_optspecs
    string join \n config= socket= json h/help V/version
end

function __fish_mailrestore_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mailrestore_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mailrestore_using_subcommand
    set -l cmd (__fish_mailrestore_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mailrestore -n "__fish_mailrestore_needs_command" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_needs_command" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_needs_command" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -s V -l version -d 'Print version'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "serve" -d 'Run the daemon in the foreground (systemd runs this)'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "health" -d 'Show the daemon\'s state and each backend\'s'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "points" -d 'List the restore points of a user, newest first'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "snapshot" -d 'Take restore points now'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "restore" -d 'Start a restore into a new dated folder; `--wait` follows it'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "prune" -d 'Apply the retention policy now and reclaim space (through the daemon when it runs, else offline on the state directory)'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "verify" -d 'Check the index and the store (offline: the daemon must not hold the state directory)'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "jobs" -d 'List jobs, newest first'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "job" -d 'Show one job'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "cancel" -d 'Cancel a job: a queued one at once, a running one between two messages'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c mailrestore -n "__fish_mailrestore_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand serve" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand serve" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand serve" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand serve" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand health" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand health" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand health" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand health" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand points" -l date -d 'That day\'s points (in the daemon\'s time zone), or the nearest around it' -r
complete -c mailrestore -n "__fish_mailrestore_using_subcommand points" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand points" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand points" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand points" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand snapshot" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand snapshot" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand snapshot" -l all -d 'Every user the schedule knows'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand snapshot" -l wait -d 'Wait until the snapshots end; exit 1 if one failed'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand snapshot" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand snapshot" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand restore" -l point -d 'The restore point id (see `points`)' -r
complete -c mailrestore -n "__fish_mailrestore_using_subcommand restore" -l scope -d 'all: every folder, calendar and address book; inbox: the INBOX only' -r -f -a "all\t''
inbox\t''"
complete -c mailrestore -n "__fish_mailrestore_using_subcommand restore" -l requested-by -d 'Who asked (gets the notification mail)' -r
complete -c mailrestore -n "__fish_mailrestore_using_subcommand restore" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand restore" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand restore" -l wait -d 'Follow the restore with a progress bar; exit 1 if it fails'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand restore" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand restore" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand prune" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand prune" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand prune" -l dry-run -d 'Show what would go and what space would come back; change nothing'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand prune" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand prune" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand verify" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand verify" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand verify" -l read-data -d 'Re-hash every blob of every pack'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand verify" -l repair -d 'First rebuild the index\'s blob locations and restore points from the packs'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand verify" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand verify" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand jobs" -l user -d 'Only this user\'s jobs' -r
complete -c mailrestore -n "__fish_mailrestore_using_subcommand jobs" -l kind -d 'Only this kind (snapshot, restore)' -r
complete -c mailrestore -n "__fish_mailrestore_using_subcommand jobs" -l state -d 'Only this state (queued, running, succeeded, failed, cancelled)' -r
complete -c mailrestore -n "__fish_mailrestore_using_subcommand jobs" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand jobs" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand jobs" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand jobs" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand job" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand job" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand job" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand job" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand cancel" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand cancel" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand cancel" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand cancel" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand completions" -l config -d 'Configuration file' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand completions" -l socket -d 'API socket (default: the configuration\'s api.socket)' -r -F
complete -c mailrestore -n "__fish_mailrestore_using_subcommand completions" -l json -d 'Machine-readable JSON output'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand completions" -s h -l help -d 'Print help'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "serve" -d 'Run the daemon in the foreground (systemd runs this)'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "health" -d 'Show the daemon\'s state and each backend\'s'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "points" -d 'List the restore points of a user, newest first'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "snapshot" -d 'Take restore points now'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "restore" -d 'Start a restore into a new dated folder; `--wait` follows it'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "prune" -d 'Apply the retention policy now and reclaim space (through the daemon when it runs, else offline on the state directory)'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "verify" -d 'Check the index and the store (offline: the daemon must not hold the state directory)'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "jobs" -d 'List jobs, newest first'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "job" -d 'Show one job'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "cancel" -d 'Cancel a job: a queued one at once, a running one between two messages'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "completions" -d 'Print shell completions'
complete -c mailrestore -n "__fish_mailrestore_using_subcommand help; and not __fish_seen_subcommand_from serve health points snapshot restore prune verify jobs job cancel completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
