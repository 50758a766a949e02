# Launcher.pm: what utils/run.pl and utils/slurm.pl (Kaldi-style job launchers) share.
#
# Both are called as   <launcher> [options] [JOB=a:b | JOB=a] <log-file> <command...>
# and this module does the common part of that interface:
#   - the command line: options (--name value or --name=value; '-' and '_' are interchangeable
#     in names), the optional job range NAME=a:b / NAME=a, the log file and the command words,
#     joined the way Kaldi's run.pl does it (a word without whitespace as-is, so shell syntax
#     such as '|' given as a separate word works; other words quoted);
#   - replacing NAME (usually JOB) by the task id, as plain text;
#   - the log format: "# <command>", "# Started at <date>", ..., and at the end
#     "# Accounting: time=<s> threads=<n>" and "# Ended (code <status>) at <date>, elapsed time <s> seconds"
#     (slurm.pl's job script writes the same lines from bash);
#   - the final report naming the failed logs, and the exit status.
# Only modules of perl-base are used, so the launchers run on a minimal Perl.
#
# Loaded by the launchers with
#   use Cwd qw(abs_path); use File::Basename qw(dirname); use lib dirname(abs_path($0));
# (FindBin's RealBin without FindBin, which is not in perl-base), so that it is found through the
# recipes' utils -> ../../TEMPLATE/peft1/utils symlink and when a launcher is called by absolute path.
package Launcher;

use strict;
use warnings;
use File::Path qw(make_path);

our $me = "launcher";   # the launcher's name, for messages (set by parse_command_line)

# Parse @ARGV (consumed).  Prints the usage and exits 1 if there is no log file and command.
# Returns an object with
#   opts    => {name => value}: the options given (a repeated option keeps its last value)
#   order   => [names]: the options in the order they were first given
#   jobname, jobstart, jobend: the job range (jobname is undef without one)
#   logfile => the log file name as given
#   cmd     => the command, its words joined as Kaldi does
sub parse_command_line {
  my ($class, $name, $options_help) = @_;
  $me = $name;
  my $self = bless { opts => {}, order => [] }, $class;
  while (@ARGV) {
    my $arg = $ARGV[0];
    if ($arg =~ /^--([A-Za-z][\w-]*)(?:=(.*))?$/s) {
      shift @ARGV;
      my ($opt, $value) = ($1, $2);
      $opt =~ tr/-/_/;
      if (!defined $value) {
        usage($options_help) if !@ARGV;
        $value = shift @ARGV;
      }
      push @{$self->{order}}, $opt unless exists $self->{opts}{$opt};
      $self->{opts}{$opt} = $value;
    } elsif (!defined $self->{jobname} && $arg =~ /^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
      shift @ARGV;
      @$self{qw(jobname jobstart jobend)} = ($1, $2, defined $3 ? $3 : $2);
      if ($self->{jobend} < $self->{jobstart}) { die "$me: invalid job range $arg\n"; }
    } else {
      last;
    }
  }
  usage($options_help) if @ARGV < 2;

  my $logfile = shift @ARGV;
  if ($logfile =~ /^-/) { die "$me: the log file '$logfile' looks like an option\n"; }
  my ($jobname, $jobstart, $jobend) = @$self{qw(jobname jobstart jobend)};
  if (defined $jobname && $jobend > $jobstart && index($logfile, $jobname) < 0) {
    die "$me: you are running $jobname=$jobstart:$jobend but the log file '$logfile' does not " .
      "contain $jobname; every job would write the same log\n";
  }
  $self->{logfile} = $logfile;
  $self->{cmd} = join_command(@ARGV);
  return $self;
}

sub usage {
  my ($options_help) = @_;
  print STDERR "Usage: $me [options] [JOB=1:N] <log-file> <command...>\n  options: $options_help\n";
  exit 1;
}

# Join command words like Kaldi: as-is without whitespace, else quoted.
sub join_command {
  my $cmd = "";
  for my $x (@_) {
    if ($x =~ /^\S+$/) { $cmd .= $x . " "; }
    elsif ($x =~ /"/) { $cmd .= "'$x' "; }
    else { $cmd .= "\"$x\" "; }
  }
  $cmd =~ s/ $//;
  return $cmd;
}

# The task ids: a..b for a job range, else just ($single).
sub ids {
  my ($self, $single) = @_;
  return defined $self->{jobname} ? ($self->{jobstart} .. $self->{jobend}) : ($single);
}

# $s with the job variable replaced by $id (unchanged without a job range or id).
sub subst {
  my ($self, $s, $id) = @_;
  return $s unless defined $self->{jobname} && defined $id;
  $s =~ s/\Q$self->{jobname}\E/$id/g;
  return $s;
}

# Dies unless $value (of option --$opt) is an integer (>= 0 unless $signed).
sub check_integer {
  my ($opt, $value, $signed) = @_;
  my $re = $signed ? qr/^-?\d+$/ : qr/^\d+$/;
  die "$me: --$opt must be an integer, got '$value'\n" unless $value =~ $re;
}

sub ensure_dir {
  my ($dir) = @_;
  make_path($dir) unless -d $dir;
  die "$me: cannot create directory $dir\n" unless -d $dir;
}

# The first lines of a job log (a launcher may add more header lines, then "#").
sub log_header {
  my ($cmd) = @_;
  return "# $cmd\n# Started at " . localtime() . "\n";
}

# The last lines of a job log; without $elapsed just the "# Ended" line.
sub log_footer {
  my ($ret_str, $elapsed, $threads) = @_;
  return "# Ended ($ret_str) at " . localtime() . "\n" unless defined $elapsed;
  return "# Accounting: time=$elapsed threads=$threads\n" .
    "# Ended ($ret_str) at " . localtime() . ", elapsed time $elapsed seconds\n";
}

# Appends @text to the file $path; false (with $!) if it cannot be opened.
sub append_file {
  my ($path, @text) = @_;
  open(my $fh, '>>', $path) or return 0;
  print $fh @text;
  close($fh);
  return 1;
}

# Exits 0 if @failed_logs is empty, else names them on stderr and exits 1.
sub exit_with_summary {
  my ($num_jobs, @failed_logs) = @_;
  exit 0 unless @failed_logs;
  if ($num_jobs == 1) {
    print STDERR "$me: job failed, log is in $failed_logs[0]\n";
  } else {
    print STDERR "$me: " . scalar(@failed_logs) . " / $num_jobs failed, log is in @failed_logs\n";
  }
  exit 1;
}

1;
