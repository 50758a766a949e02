#!/usr/bin/env perl
# slurm.pl: run Kaldi-style (array) jobs on a Slurm cluster and wait for them.
#
# Usage: slurm.pl [options] [JOB=1:N] <log-file> <command...>
#   e.g. slurm.pl --config conf/slurm.conf --mem 4G JOB=1:10 exp/log/decode.JOB.log python -m foo --part JOB
#
# Same interface as run.pl: the string JOB (or NAME in NAME=a:b / NAME=a) is replaced by the job
# index in the log file name and in the command; the command words are joined as Kaldi does
# (words without whitespace as-is, so '|' or '>' given as separate words are shell syntax; other
# words quoted).  A range is submitted as ONE job array (sbatch --array=a-b[%max_jobs_run]),
# a plain call as one job.  Each job runs `bash -c <command>` on the allocated node, in the
# current directory (it sources ./path.sh first if there is one), and writes its own log:
#   # <command>
#   # Started at <date>
#   # Slurm job <id> on <host>; submitted with: sbatch ...
#   #
#   <output of the command>
#   # Accounting: time=<seconds> threads=<num_threads>
#   # Ended (code <exit status>) at <date>, elapsed time <seconds> seconds
# Slurm's own messages for the job (time limit, out of memory, ...) go to the same log.
# slurm.pl waits for every job: a job writes its exit status to <logdir>/q/done.* when it ends,
# and squeue is asked now and then so that jobs that die without one (cancelled, node failure)
# are noticed too.  It exits 0 if every job succeeded; otherwise it names the failed logs and
# exits 1.  SIGINT/SIGTERM/SIGHUP cancel the submitted jobs (scancel).  The generated job script
# and the sbatch output are kept in <logdir>/q/.
#
# Options (also --opt=value; '-' and '_' are interchangeable in names):
#   --config F         Kaldi-style config (default: conf/slurm.conf if it exists, else the built-in one below)
#   --max_jobs_run N   at most N array tasks at a time (sbatch --array=...%N)
#   any other option (--gpu, --mem, --num_threads, --num_nodes, --time, --name, ...) is turned into
#   sbatch flags by the config file; an option the config does not describe is an error.
#
# Config file format (as in Kaldi's queue.pl/slurm.pl; '#' starts a comment):
#   command sbatch --export=ALL          the submit command and its fixed flags
#   option mem=* --mem-per-cpu $0        flags for any value of --mem ($0 = the value)
#   option mem=0                         a specific value (here: no flags at all)
#   default gpu=0                        the value used when the option is not given
# Environment: SLURM_PL_SQUEUE_INTERVAL (seconds between squeue checks, default 10) and
#   SLURM_PL_GRACE (seconds a job may be gone from squeue before its exit status shows up,
#   e.g. on NFS; default 30).
use strict;
use warnings;
use Cwd qw(getcwd abs_path);
use File::Basename qw(dirname basename);
use File::Spec;
use POSIX ();
use lib dirname(abs_path($0));   # Launcher.pm lies next to the real script
use Launcher;

# Sub-second clock if Time::HiRes is there (Debian: package perl; perl-base lacks it).
my $have_hires = eval { require Time::HiRes; 1 };
sub now { return $have_hires ? Time::HiRes::time() : time(); }
sub nap { select(undef, undef, undef, $_[0]); }

my $me = "slurm.pl";

my $default_config = <<'EOF';
command sbatch --export=ALL --ntasks-per-node=1
option name=* --job-name $0
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
option num_nodes=* --nodes $0
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0
EOF

# Quote a word for display / for a bash script.
sub shq {
  my $s = shift;
  return $s if $s =~ m{^[\w@%+=:,./-]+$};
  $s =~ s/'/'\\''/g;
  return "'$s'";
}

# ---- command line ----
my $cl = Launcher->parse_command_line($me,
  "--config F, --max_jobs_run N, and those in the config (--gpu, --mem, --num_threads, ...)");
my %cli = %{$cl->{opts}};              # option name -> value
my @cli_order = @{$cl->{order}};       # option names in the order given
my ($jobname, $jobstart, $jobend) = @$cl{qw(jobname jobstart jobend)};
my $config = delete $cli{config};
my $max_jobs_run = delete $cli{max_jobs_run};
@cli_order = grep { $_ ne 'config' && $_ ne 'max_jobs_run' } @cli_order;
Launcher::check_integer('max_jobs_run', $max_jobs_run) if defined $max_jobs_run;

# ---- config ----
my $config_text;
my $config_name;
if (defined $config) {
  open(my $fh, '<', $config) or die "$me: cannot read config file $config: $!\n";
  local $/;
  $config_text = <$fh>;
  close($fh);
  $config_name = $config;
} elsif (-f "conf/slurm.conf") {
  open(my $fh, '<', "conf/slurm.conf") or die "$me: cannot read conf/slurm.conf: $!\n";
  local $/;
  $config_text = <$fh>;
  close($fh);
  $config_name = "conf/slurm.conf";
} else {
  $config_text = $default_config;
  $config_name = "the built-in default config of $me";
}

my @command;          # submit command words
my @config_order;     # option names in config order
my %star;             # name -> [template words]
my %specific;         # "name=value" -> [words]
my %default;          # name -> value
for my $line (split /\n/, $config_text) {
  my $orig = $line;
  $line =~ s/#.*//;
  $line =~ s/^\s+|\s+$//g;
  next if $line eq '';
  if ($line =~ /^command\s+(.+)$/) {
    @command = split ' ', $1;
  } elsif ($line =~ /^option\s+([^=\s]+)=\*\s+(.+)$/) {
    my ($name, $args) = ($1, $2);
    die "$me: no \$0 in '$orig' ($config_name)\n" unless $args =~ /\$0/;
    push @config_order, $name unless grep { $_ eq $name } @config_order;
    $star{$name} = [split ' ', $args];
  } elsif ($line =~ /^option\s+([^=\s]+)=(\S+)\s*(.*)$/) {
    my ($name, $value, $args) = ($1, $2, $3);
    push @config_order, $name unless grep { $_ eq $name } @config_order;
    $specific{"$name=$value"} = [split ' ', $args];
  } elsif ($line =~ /^default\s+([^=\s]+)=(\S+)$/) {
    $default{$1} = $2;
    push @config_order, $1 unless grep { $_ eq $1 } @config_order;
  } else {
    die "$me: cannot parse line '$orig' in $config_name\n";
  }
}
die "$me: no 'command' line in $config_name\n" unless @command;

for my $name (keys %default) {
  if (!exists $cli{$name}) { $cli{$name} = $default{$name}; push @cli_order, $name; }
}
my @sbatch_opts;
my %seen;
for my $name ((grep { exists $cli{$_} } @config_order), @cli_order) {
  next if $seen{$name}++;
  my $value = $cli{$name};
  if (exists $specific{"$name=$value"}) {
    push @sbatch_opts, @{$specific{"$name=$value"}};
  } elsif (exists $star{$name}) {
    push @sbatch_opts, map { (my $w = $_) =~ s/\$0/$value/g; $w } @{$star{$name}};
  } else {
    die "$me: option --$name $value is not described in $config_name\n";
  }
}
my $num_threads = exists $cli{num_threads} ? $cli{num_threads} : 1;

# ---- log file, command, job script ----
my $logfile = $cl->{logfile};
die "$me: log file names with a backslash are not supported: $logfile\n" if $logfile =~ /\\/;
my $cwd = getcwd();
my $logfile_arg = $logfile;   # as given, for messages
$logfile = File::Spec->rel2abs($logfile);

my $cmd = $cl->{cmd};
my @ids = $cl->ids('single');
sub subst { return $cl->subst(@_); }
sub log_of { return subst($logfile, $_[0]); }

for my $id (@ids) {
  my $log = log_of($id);
  Launcher::ensure_dir(dirname($log));
  unlink($log);
}
my $base = basename($logfile);
if (defined $jobname) { $base =~ s/\.?\Q$jobname\E//g; }
$base =~ s/\.log$//;
$base = "job" if $base eq '';
my $qdir = dirname(log_of($ids[0])) . "/q";
$qdir =~ s{/(log|LOG)/+q$}{/q};
Launcher::ensure_dir($qdir);
my $script = "$qdir/$base.sh";
my $qlog = "$qdir/$base.log";
my $sync_prefix = "done.$base.$$.";

# Slurm file pattern for the output: % escaped, JOB -> %a (array task id).
(my $out_pattern = $logfile) =~ s/%/%%/g;
$out_pattern = subst($out_pattern, '%a') if defined $jobname;

my @sbatch = (@command, @sbatch_opts, '--parsable', '--open-mode=append', '--output', $out_pattern);
if (defined $jobname) {
  my $array = $jobstart == $jobend ? "$jobstart" : "$jobstart-$jobend";
  $array .= "%$max_jobs_run" if defined $max_jobs_run && $max_jobs_run > 0 && $jobend > $jobstart;
  push @sbatch, "--array=$array";
}
push @sbatch, $script;
my $sbatch_str = join(" ", map { shq($_) } @sbatch);

{
  my $task_expr = defined $jobname ? '${SLURM_ARRAY_TASK_ID:?not a job array task}' : 'single';
  my $subst_code = defined $jobname
    ? "jobvar=" . shq($jobname) . "\ncmd=\${cmd//\"\$jobvar\"/\$task}\nlog=\${log//\"\$jobvar\"/\$task}\n"
    : "";
  open(my $fh, '>', $script) or die "$me: cannot write $script: $!\n";
  print $fh <<"EOF";
#!/bin/bash
# Written by $me (pid $$) at ${\ scalar localtime()}; submitted with:
#   $sbatch_str
cd ${\ shq($cwd)} || exit 1
# shellcheck disable=SC1091
[ -f ./path.sh ] && . ./path.sh
task=$task_expr
# shellcheck disable=SC2016
cmd=${\ shq($cmd)}
log=${\ shq($logfile)}
${subst_code}sync=${\ shq("$qdir/$sync_prefix")}\$task
sbatch_cmd=${\ shq($sbatch_str)}
{
  printf '# %s\\n' "\$cmd"
  echo "# Started at \$(date)"
  echo "# Slurm job \${SLURM_JOB_ID:-?}\${SLURM_ARRAY_JOB_ID:+ (array \${SLURM_ARRAY_JOB_ID}_\${SLURM_ARRAY_TASK_ID})} on \$(hostname); submitted with:"
  printf '# %s\\n' "\$sbatch_cmd"
  echo "#"
} >> "\$log"
trap 'echo "# $me: the job received SIGTERM (scancel or time limit?)" >> "\$log"' TERM
time1=\$(date +%s)
bash -c "\$cmd" < /dev/null >> "\$log" 2>&1
ret=\$?
time2=\$(date +%s)
echo "# Accounting: time=\$((time2 - time1)) threads=$num_threads" >> "\$log"
echo "# Ended (code \$ret) at \$(date), elapsed time \$((time2 - time1)) seconds" >> "\$log"
echo "\$ret" > "\$sync.tmp" && mv -f "\$sync.tmp" "\$sync"
exit "\$ret"
EOF
  close($fh);
  chmod(0755, $script);
}

# ---- submit ----
sub run_capture {   # run a command (list), return (exit status, stdout+stderr)
  my @c = @_;
  my $pid = open(my $ph, '-|');
  die "$me: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    open(STDERR, '>&', \*STDOUT);
    open(STDIN, '<', '/dev/null');
    exec { $c[0] } @c or do { print "$me: cannot run $c[0]: $!\n"; POSIX::_exit(127); };
  }
  local $/;
  my $out = <$ph>;
  close($ph);
  return ($?, defined $out ? $out : '');
}

my ($job_id, $sbatch_out, $status);
for my $try (1 .. 3) {
  ($status, $sbatch_out) = run_capture(@sbatch);
  if ($status == 0 && $sbatch_out =~ /^(\d+)(?:;\S+)?\s*$/m) { $job_id = $1; last; }
  last unless $sbatch_out =~ /timed out|unable to contact|try again|temporarily|connection refused/i;
  nap(5 * $try);
}
if (open(my $fh, '>>', $qlog)) {
  print $fh "# " . localtime() . "\n# $sbatch_str\n$sbatch_out";
  close($fh);
}
if (!defined $job_id) {
  print STDERR "$me: error submitting jobs (exit status " . ($status >> 8) . ")\n" .
    "$me: command was: $sbatch_str\n$sbatch_out";
  exit 1;
}

# ---- wait ----
my %pending = map { $_ => 1 } @ids;
my %code;          # id -> exit status
my %vanished;      # id -> time it was first seen finished without an exit status
my %warned;
my $squeue_every = $ENV{SLURM_PL_SQUEUE_INTERVAL} || 10;
my $grace = defined $ENV{SLURM_PL_GRACE} ? $ENV{SLURM_PL_GRACE} : 30;
my %active_state = map { $_ => 1 } qw(PENDING RUNNING SUSPENDED COMPLETING CONFIGURING REQUEUED
  REQUEUE_FED REQUEUE_HOLD RESIZING SIGNALING STAGE_OUT STOPPED SPECIAL_EXIT);
my %hopeless_reason = map { $_ => 1 } qw(PartitionNodeLimit PartitionTimeLimit BadConstraints
  PartitionConfig InvalidAccount InvalidQOS ReqNodeNotAvail PartitionDown PartitionInactive);

my $interrupted;
for my $sig (qw(INT TERM HUP)) {
  $SIG{$sig} = sub { $interrupted = $sig; };
}

sub read_sync_files {
  opendir(my $dh, $qdir) or return;   # opendir also refreshes NFS directory caches
  my @names = grep { index($_, $sync_prefix) == 0 } readdir($dh);
  closedir($dh);
  for my $name (@names) {
    my $id = substr($name, length $sync_prefix);
    next unless $pending{$id};
    my $path = "$qdir/$name";
    open(my $fh, '<', $path) or next;
    my $line = <$fh>;
    close($fh);
    next unless defined $line && $line =~ /^(\d+)/;
    $code{$id} = $1;
    delete $pending{$id};
    unlink($path);
  }
}

sub check_squeue {
  my ($st, $out) = run_capture('squeue', '--noheader', '--array', '--states=all',
                               "--jobs=$job_id", '--format=%i|%T|%r');
  my %state;
  if ($st != 0) {
    return unless $out =~ /Invalid job id/i;   # purged: all finished; anything else: ask again later
  } else {
    for my $line (split /\n/, $out) {
      next unless $line =~ /^(\d+)(?:_(\d+))?\|(\S+)\|(.*)$/;
      my $id = defined $2 ? $2 : 'single';
      $state{$id} = [$3, $4];
    }
  }
  my $now = now();
  for my $id (keys %pending) {
    my ($s, $reason) = $state{$id} ? @{$state{$id}} : ('GONE', '');
    if ($active_state{$s}) {
      delete $vanished{$id};
      if ($s eq 'PENDING' && $hopeless_reason{$reason} && !$warned{$reason}++) {
        print STDERR "$me: warning: job $job_id is pending with reason $reason; it may never start " .
          "(scancel $job_id to give up)\n";
      }
      next;
    }
    $vanished{$id} = [$now, $s] unless $vanished{$id};
    next if $now - $vanished{$id}[0] < $grace;
    # Finished (or gone) for a while and still no exit status: it died without running to the end.
    Launcher::append_file(log_of($id), "# $me: Slurm job $job_id" . ($id eq 'single' ? '' : "_$id") .
      " ended in state $vanished{$id}[1] without reporting an exit status\n", Launcher::log_footer("code 1"));
    $code{$id} = 1;
    delete $pending{$id};
  }
}

my $interval = 0.2;
my $last_squeue = now();
while (%pending) {
  if ($interrupted) {
    run_capture('scancel', $job_id);
    print STDERR "$me: interrupted by SIG$interrupted; cancelled Slurm job $job_id\n";
    exit 1;
  }
  read_sync_files();
  last unless %pending;
  if (now() - $last_squeue >= $squeue_every) {
    check_squeue();
    $last_squeue = now();
    read_sync_files() if %pending;
    last unless %pending;
  }
  nap($interval);
  $interval = $interval * 1.2 > 2 ? 2 : $interval * 1.2;
}

my @failed = grep { $code{$_} != 0 } @ids;
Launcher::exit_with_summary(scalar(@ids), map { subst($logfile_arg, $_) } @failed);
