package main

// compose_test.go checks the deployment files no machine here can run (there
// is no Docker engine): docker-compose.yml is loaded by the compose
// specification's own library with every profile enabled, courier's
// environment there must be courier's configuration, Prometheus must scrape
// every courier, and the Dockerfile's build command must build a static
// binary.

import (
	"context"
	"debug/elf"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// loadCompose loads docker-compose.yml as `docker compose --profile '*'`
// would, validating it against the compose specification.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	project, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("courier", true)
		o.Profiles = []string{"*"}
	})
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return project
}

// courierServices are the services that run this repository's image: built
// from its Dockerfile, or running the image such a service builds.
func courierServices(t *testing.T, p *types.Project) []types.ServiceConfig {
	t.Helper()
	images := map[string]bool{}
	for _, s := range p.Services {
		if s.Build != nil && s.Build.Context == p.WorkingDir {
			images[s.Image] = true
		}
	}
	var out []types.ServiceConfig
	for _, s := range p.Services {
		if (s.Build != nil && s.Build.Context == p.WorkingDir) || (s.Image != "" && images[s.Image]) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b types.ServiceConfig) int { return strings.Compare(a.Name, b.Name) })
	if len(out) == 0 {
		t.Fatal("docker-compose.yml has no service built from this repository")
	}
	return out
}

func TestComposeCourierEnvironmentIsCourierConfiguration(t *testing.T) {
	known := map[string]bool{"GOMEMLIMIT": true} // the Go runtime's, not config.go's
	typ := reflect.TypeFor[config]()
	for i := range typ.NumField() {
		if name := typ.Field(i).Tag.Get("env"); name != "" {
			known[name] = true
		}
	}
	for _, s := range courierServices(t, loadCompose(t)) {
		t.Run(s.Name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range s.Environment {
				if !known[k] {
					t.Errorf("sets %s, which courier does not read (config.go knows %v)", k, slices.Sorted(maps.Keys(known)))
				}
				if v != nil {
					env[k] = *v
				}
			}
			if _, err := loadConfig(func(k string) string { return env[k] }); err != nil {
				t.Errorf("courier would refuse this environment: %v", err)
			}
		})
	}
}

func TestComposeMountsFilesThatExist(t *testing.T) {
	p := loadCompose(t)
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s mounts %s, which does not exist: %v", s.Name, v.Source, err)
			}
		}
	}
}

// TestComposePrometheusScrapesEveryCourier reads the configuration each
// Prometheus service mounts: its job courier names only courier services,
// it loads the alert rules, and together they scrape every courier.
func TestComposePrometheusScrapesEveryCourier(t *testing.T) {
	p := loadCompose(t)
	couriers := map[string]bool{}
	for _, s := range courierServices(t, p) {
		port := "9001"
		if v := s.Environment["PORT"]; v != nil && *v != "" {
			port = *v
		}
		couriers[net.JoinHostPort(s.Name, port)] = true
	}

	scraped := map[string]bool{}
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind || v.Target != "/etc/prometheus/prometheus.yml" {
				continue
			}
			targets, rules := readPrometheusConfig(t, v.Source)
			for _, target := range targets {
				if !couriers[target] {
					t.Errorf("service %s: job courier scrapes %s, which is no courier service (those are %v)",
						s.Name, target, slices.Sorted(maps.Keys(couriers)))
				}
				scraped[target] = true
			}
			if !slices.Contains(rules, "alerts.yml") {
				t.Errorf("service %s: rule_files %v, want alerts.yml loaded", s.Name, rules)
			}
		}
	}
	if len(scraped) == 0 {
		t.Fatal("no service mounts a Prometheus configuration with a courier job at /etc/prometheus/prometheus.yml")
	}
	for c := range couriers {
		if !scraped[c] {
			t.Errorf("no Prometheus scrapes %s", c)
		}
	}
}

// readPrometheusConfig returns the targets of job courier in a Prometheus
// configuration file, and its rule files.
func readPrometheusConfig(t *testing.T, path string) (targets, ruleFiles []string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName == "courier" {
			for _, st := range sc.StaticConfigs {
				targets = append(targets, st.Targets...)
			}
		}
	}
	return targets, cfg.RuleFiles
}

// TestDockerfileBuildsAStaticBinary runs the Dockerfile's `go build` line
// as written, only with the output elsewhere, and checks that the result
// can run in a distroless static image: no dynamic loader, no shared
// libraries. The first run compiles everything with -trimpath (about a
// minute on two cores), so -short skips it.
func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds courier from scratch with the Dockerfile's flags")
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RUN (.*\bgo build\b.*) -o (\S+) \.$`).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("the Dockerfile has no `RUN ... go build ... -o PATH .` line")
	}
	command := string(m[1])
	if !strings.Contains(command, "CGO_ENABLED=0") {
		t.Errorf("the Dockerfile builds with %q: without CGO_ENABLED=0 the binary may need libc, which distroless/static lacks", command)
	}
	out := filepath.Join(t.TempDir(), "courier")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "sh", "-c", command+` -o "$1" .`, "sh", out)
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", command, err, msg)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}

	// It runs, and refuses bad configuration as the contract says.
	run := exec.CommandContext(ctx, out)
	run.Env = []string{"PORT=none"}
	msg, err := run.CombinedOutput()
	if code := run.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(msg), "PORT") {
		t.Errorf("the built binary with PORT=none: got exit %d (%v) %q, want 2 and a line naming PORT", code, err, msg)
	}
}
