# testimage cases for meta-tegra-ai: the first-boot engine service and its tools.
#
#   IMAGE_CLASSES += "testimage"
#   TEST_SUITES:append = " tegra_ai"
#   bitbake core-image-base -c testimage      (TEST_TARGET = "simpleremote" for a Jetson:
#                                               engines need the real GPU, not QEMU)
#
# On a machine without the NVIDIA GPU (QEMU) the engine checks are skipped:
# TensorRT engines are only built on the GPU they run on.

import json

from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage


class TegraAIEnginesTest(OERuntimeTestCase):

    def run_ok(self, cmd, timeout=300):
        status, output = self.target.run(cmd, timeout=timeout)
        self.assertEqual(status, 0, msg="%s failed (%d):\n%s" % (cmd, status, output))
        return output

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OEHasPackage(["tegra-ai-tools"])
    def test_tool_runs(self):
        self.assertIn("tensorrt-optimize", self.run_ok("tensorrt-optimize --version"))

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    @OEHasPackage(["tegra-ai-engines"])
    def test_service_installed_and_enabled(self):
        self.assertEqual(self.run_ok("systemctl is-enabled tegra-ai-engines.service").strip(), "enabled")
        # hardened as documented
        props = self.run_ok("systemctl show -p ProtectSystem -p PrivateNetwork -p NoNewPrivileges "
                            "tegra-ai-engines.service")
        for expected in ("ProtectSystem=strict", "PrivateNetwork=yes", "NoNewPrivileges=yes"):
            self.assertIn(expected, props)
        # an unprivileged user of its own; the boot does not wait for engine builds
        user = self.run_ok("systemctl show -p User --value tegra-ai-engines.service").strip()
        self.assertNotIn(user, ("", "root"))          # TEGRA_AI_ENGINES_USER, "tegra-ai" by default
        self.run_ok("id %s" % user)
        after = self.run_ok("systemctl show -p After --value multi-user.target").split()
        self.assertNotIn("tegra-ai-engines.service", after)

    @OETestDepends(["tegra_ai.TegraAIEnginesTest.test_service_installed_and_enabled"])
    def test_first_boot_engines(self):
        status, _ = self.target.run("test -e /dev/nvgpu/igpu0/ctrl -o -e /dev/nvidiactl -o -e /dev/nvmap")
        if status != 0:
            self.skipTest("no Jetson GPU on this target (QEMU?): engines are only built on the GPU they run on")
        models = self.run_ok("ls /usr/share/tegra-ai/models/*/manifest.json 2>/dev/null || true").split()
        if not models:
            self.skipTest("no model bundle installed (add tegra-ai-model-digits or your own model recipe)")
        # wait for the oneshot run (a first boot builds every engine; the digits model takes seconds)
        self.run_ok("timeout 3600 sh -c 'while [ \"$(systemctl show -p ActiveState --value "
                    "tegra-ai-engines.service)\" = activating ]; do sleep 5; done'", timeout=3700)
        state = self.run_ok("systemctl show -p ActiveState -p SubState -p Result tegra-ai-engines.service")
        self.assertIn("Result=success", state, msg=self.run_ok("journalctl -u tegra-ai-engines --no-pager | tail -50"))
        cache = self.run_ok(". /etc/default/tegra-ai-engines 2>/dev/null; "
                            "systemctl show -p Environment --value tegra-ai-engines.service | tr ' ' '\\n' "
                            "| sed -n 's/^TEGRA_AI_ENGINE_CACHE=//p'").strip().splitlines()[-1]
        # written by the service's user, readable by every application
        user = self.run_ok("systemctl show -p User --value tegra-ai-engines.service").strip()
        self.assertEqual(self.run_ok("stat -c %%U %s" % cache).strip(), user)
        report = json.loads(self.run_ok("tensorrt-optimize verify-cache %s --json" % cache))
        self.assertFalse(report["problems"], msg=report)
        self.assertGreaterEqual(report["engines"], len(models))
