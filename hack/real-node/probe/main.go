// probe plays a radflow model on the real node, the way the model contract says one behaves
// (README, "A step's model"): it reads the study under RADFLOW_STUDY_DIR, writes a result under
// RADFLOW_OUTPUT_DIR and reports a small JSON object in /dev/termination-log.
//
//	probe            count the study's files and DICOM Part-10 instances, write result.json
//	probe exit N     report {"exit":N} and exit with N (a model that crashes)
//	probe sleep S    sleep S seconds first, then act as without arguments
//
// It also reports what the container really got: its uid, whether the root filesystem took a
// write, and RADFLOW_INPUTS (earlier steps' outputs), so tests can check the pod's security
// context and the cascade from the inside.
package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func report(v map[string]any) {
	b, _ := json.Marshal(v)
	// the kubelet copies this file into the container status; radflow reads it as the step's outputs
	if err := os.WriteFile("/dev/termination-log", b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "probe: termination-log:", err)
	}
	fmt.Println(string(b))
}

// isDicom: a Part-10 file has "DICM" after its 128-byte preamble.
func isDicom(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 132)
	n, _ := f.Read(b)
	return n == 132 && string(b[128:]) == "DICM"
}

func main() {
	args := os.Args[1:]
	if len(args) == 2 && args[0] == "exit" {
		code, _ := strconv.Atoi(args[1])
		fmt.Fprintf(os.Stderr, "probe: exiting with %d as asked\n", code)
		report(map[string]any{"exit": code})
		os.Exit(code)
	}
	if len(args) == 2 && args[0] == "sleep" {
		s, _ := strconv.Atoi(args[1])
		time.Sleep(time.Duration(s) * time.Second)
	}
	out := map[string]any{"uid": os.Getuid()}
	// a read-only root filesystem refuses this write
	if err := os.WriteFile("/probe-write-test", []byte("x"), 0o644); err == nil {
		out["rootWritable"] = true
		_ = os.Remove("/probe-write-test")
	} else {
		out["rootWritable"] = false
	}
	if in := os.Getenv("RADFLOW_INPUTS"); in != "" {
		var inputs map[string]any
		if json.Unmarshal([]byte(in), &inputs) == nil {
			out["inputSteps"] = len(inputs)
		}
	}
	files, dicom := 0, 0
	if dir := os.Getenv("RADFLOW_STUDY_DIR"); dir != "" {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files++
				if isDicom(p) {
					dicom++
				}
			}
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe: reading the study:", err)
			report(map[string]any{"error": "study not readable"})
			os.Exit(2)
		}
		out["files"] = files
		out["instances"] = dicom
	}
	if dir := os.Getenv("RADFLOW_OUTPUT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "probe: output dir:", err)
			report(map[string]any{"error": "output dir not writable"})
			os.Exit(2)
		}
		b, _ := json.Marshal(map[string]any{"files": files, "instances": dicom})
		if err := os.WriteFile(filepath.Join(dir, "result.json"), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "probe: result:", err)
			os.Exit(2)
		}
		out["resultWritten"] = true
	}
	report(out)
}
